# Queues: retention, redrive, visibility against the forwarder timeout, encryption S3 can use.

mock_provider "aws" {
  source = "./tests/mocks"
  # Mocked computed values (ARNs, URLs, versions) are known at plan time, so assertions on
  # them need no apply.
  override_during = plan
}

variables {
  environment = "dev"
  package_dir = "./tests/fixtures/lambda"
}

run "queues_retention_redrive_and_encryption" {
  command = plan

  assert {
    condition     = aws_sqs_queue.ingest.message_retention_seconds == 345600
    error_message = "The ingest queue keeps messages 4 days (345,600 s)."
  }

  assert {
    condition = alltrue([for q in [aws_sqs_queue.ingest_dlq, aws_sqs_queue.delivery_dlq, aws_sqs_queue.requeue_dlq] :
    q.message_retention_seconds == 1209600])
    error_message = "Every DLQ keeps messages 14 days."
  }

  assert {
    condition = jsondecode(aws_sqs_queue.ingest.redrive_policy) == {
      deadLetterTargetArn = aws_sqs_queue.ingest_dlq.arn
      maxReceiveCount     = 5
    }
    error_message = "The ingest queue redrives to its DLQ after 5 receives."
  }

  assert {
    condition     = aws_sqs_queue.ingest.visibility_timeout_seconds >= 6 * aws_lambda_function.this["forwarder"].timeout + aws_lambda_event_source_mapping.ingest.maximum_batching_window_in_seconds
    error_message = "Visibility timeout must be at least 6 x forwarder timeout + batching window."
  }

  assert {
    condition     = aws_sqs_queue.ingest.visibility_timeout_seconds == 200 && aws_lambda_function.this["forwarder"].timeout == 30
    error_message = "Visibility timeout and forwarder timeout come from tunables.json (200 s, 30 s)."
  }

  # --- sqs managed encryption without customer key
  assert {
    condition = alltrue([for q in [aws_sqs_queue.ingest, aws_sqs_queue.ingest_dlq, aws_sqs_queue.delivery_dlq, aws_sqs_queue.requeue_dlq] :
    q.sqs_managed_sse_enabled == true && q.kms_master_key_id == null])
    error_message = "Without a customer key queues use SQS-managed SSE (S3 cannot publish under aws/sqs)."
  }
}

run "customer_key_usable_by_s3" {
  command = plan

  variables {
    create_kms_key = true
  }

  assert {
    condition     = aws_sqs_queue.ingest.kms_master_key_id == aws_kms_key.this[0].arn
    error_message = "With a customer key the ingest queue is encrypted with it."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.kms[0].statement : (
      s.effect != "Deny" &&
      contains(s.actions, "kms:GenerateDataKey") && contains(s.actions, "kms:Decrypt") &&
      anytrue([for p in s.principals : p.type == "Service" && contains(p.identifiers, "s3.amazonaws.com")])
    )])
    error_message = "The key policy must let s3.amazonaws.com generate data keys and decrypt, or S3 events are lost."
  }

  assert {
    condition     = aws_kms_key.this[0].enable_key_rotation
    error_message = "The customer key rotates."
  }
}

run "short_visibility_timeout_refused" {
  command = plan

  # 6 x 60 s + 1 s = 361 s > the 200 s of tunables.json.
  variables {
    function_overrides = {
      forwarder = { timeout_seconds = 60 }
    }
  }

  expect_failures = [aws_sqs_queue.ingest]
}
