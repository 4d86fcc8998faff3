# Policy documents that name resources are read once those exist: this file applies (the others
# only plan), then checks how the documents are assembled and attached.

mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  environment = "dev"
  package_dir = "./tests/fixtures/lambda"
  producers = {
    acme = ["arn:aws:iam::123456789012:role/acme-uploader"]
  }
}

run "policies_are_assembled_and_attached" {
  command = apply

  assert {
    condition = alltrue([for key in ["landing", "staging", "athena"] : contains(
      data.aws_iam_policy_document.bucket[key].source_policy_documents,
      data.aws_iam_policy_document.tls_only[key].json,
    )])
    error_message = "Each bucket's policy must include its TLS statements."
  }

  assert {
    condition = (
      contains(data.aws_iam_policy_document.bucket["landing"].source_policy_documents, data.aws_iam_policy_document.producers.json) &&
      contains(data.aws_iam_policy_document.bucket["staging"].source_policy_documents, data.aws_iam_policy_document.inventory_destination.json) &&
      length(data.aws_iam_policy_document.bucket["staging"].source_policy_documents) == 2
    )
    error_message = "Producers' grants go on the landing bucket only; staging's policy carries its TLS statements and S3 Inventory's grant (inventory.tf)."
  }

  # Mocked documents all render alike: the count tells the landing uploads' denies are there.
  assert {
    condition = (
      contains(data.aws_iam_policy_document.bucket["landing"].source_policy_documents, data.aws_iam_policy_document.landing_uploads.json) &&
      length(data.aws_iam_policy_document.bucket["landing"].source_policy_documents) == 3 &&
      length(data.aws_iam_policy_document.bucket["athena"].source_policy_documents) == 1
    )
    error_message = "The landing bucket's policy carries its TLS statements, the upload denies and the producers' grants; athena's only TLS."
  }

  assert {
    condition     = alltrue([for key, p in aws_s3_bucket_policy.this : p.policy == data.aws_iam_policy_document.bucket[key].json])
    error_message = "Each bucket carries its policy."
  }

  assert {
    condition = alltrue([for name, p in aws_iam_role_policy.lambda : (
      p.role == aws_iam_role.lambda[name].id &&
      p.policy == data.aws_iam_policy_document.lambda[name].json &&
      contains(data.aws_iam_policy_document.lambda[name].source_policy_documents, data.aws_iam_policy_document.lambda_common[name].json) &&
      contains(data.aws_iam_policy_document.lambda[name].source_policy_documents, {
        forwarder = data.aws_iam_policy_document.forwarder.json
        processor = data.aws_iam_policy_document.processor.json
        requeue   = data.aws_iam_policy_document.requeue.json
        delivery  = data.aws_iam_policy_document.delivery.json
        redrive   = data.aws_iam_policy_document.redrive.json
        intake    = data.aws_iam_policy_document.intake.json
        report    = data.aws_iam_policy_document.report.json
      }[name])
    )])
    error_message = "Each function's role carries its own document plus the common one."
  }

  assert {
    condition     = aws_sqs_queue_policy.ingest.policy == data.aws_iam_policy_document.queue["ingest"].json && length(aws_sqs_queue_policy.dlq) == 3
    error_message = "Every queue carries its policy."
  }
}
