# S3 Inventory of the landing bucket for redrive's inventory check (delivery/inventory.py):
# every version, daily, CSV, under staging's inventory/, with the fields the check reads; S3's
# delivery admitted by the staging bucket's policy (and the customer key's), a week of reports
# kept; redrive's grants and its ingest queue binding.

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

run "inventory_lists_every_landing_version_daily" {
  command = plan

  assert {
    condition = (
      aws_s3_bucket_inventory.landing.bucket == aws_s3_bucket.this["landing"].id &&
      aws_s3_bucket_inventory.landing.name == "landing-versions" &&
      aws_s3_bucket_inventory.landing.enabled &&
      aws_s3_bucket_inventory.landing.included_object_versions == "All" &&
      one(aws_s3_bucket_inventory.landing.schedule).frequency == "Daily" &&
      length(aws_s3_bucket_inventory.landing.filter) == 0
    )
    error_message = "The landing bucket's inventory `landing-versions` (delivery/inventory.py INVENTORY_ID) lists every version of the whole bucket, daily."
  }

  assert {
    condition     = toset(aws_s3_bucket_inventory.landing.optional_fields) == toset(["Size", "LastModifiedDate", "ETag"])
    error_message = "The report carries Size, LastModifiedDate and ETag (delivery/inventory.py REQUIRED_FIELDS and the notification it sends again)."
  }

  assert {
    condition = (
      one(one(aws_s3_bucket_inventory.landing.destination).bucket).bucket_arn == aws_s3_bucket.this["staging"].arn &&
      one(one(aws_s3_bucket_inventory.landing.destination).bucket).format == "CSV" &&
      one(one(aws_s3_bucket_inventory.landing.destination).bucket).prefix == "inventory" &&
      one(one(aws_s3_bucket_inventory.landing.destination).bucket).account_id == "123456789012"
    )
    error_message = "Reports go to the staging bucket as CSV under inventory/ (delivery/inventory.py INVENTORY_PREFIX)."
  }

  assert {
    condition = (
      length(one(one(one(aws_s3_bucket_inventory.landing.destination).bucket).encryption).sse_s3) == 1 &&
      length(one(one(one(aws_s3_bucket_inventory.landing.destination).bucket).encryption).sse_kms) == 0
    )
    error_message = "Without a customer key the reports get SSE-S3 (S3 Inventory cannot use aws/s3)."
  }

  assert {
    condition     = output.landing_inventory_reports == "s3://sluice-dev-staging-123456789012/inventory/sluice-dev-landing-123456789012/landing-versions/"
    error_message = "S3 writes reports under inventory/<landing bucket>/landing-versions/ (delivery/inventory.py report_prefix)."
  }

  # --- the staging bucket admits S3's delivery, for the landing bucket of this account only
  # (tests/policies.tftest.hcl checks it is merged into staging's one policy)
  assert {
    condition = {
      for st in data.aws_iam_policy_document.inventory_destination.statement : st.sid => join(" ", concat(
        [coalesce(st.effect, "Allow"), join(",", sort(st.actions)), join(",", sort(st.resources))],
        [for p in st.principals : "${p.type}=${join(",", sort(p.identifiers))}"],
        sort([for c in st.condition : "${c.test}(${c.variable})=${join(",", c.values)}"]),
      ))
      } == {
      S3InventoryWritesLandingReports = "Allow s3:PutObject ${aws_s3_bucket.this["staging"].arn}/inventory/* Service=s3.amazonaws.com ArnLike(aws:SourceArn)=${aws_s3_bucket.this["landing"].arn} StringEquals(aws:SourceAccount)=123456789012 StringEquals(s3:x-amz-acl)=bucket-owner-full-control"
    }
    error_message = "S3 may PUT under staging's inventory/ only, for the landing bucket of this account, with bucket-owner-full-control."
  }

  # --- a week of reports
  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.staging.rule : (
      r.status == "Enabled" &&
      [for f in r.filter : f.prefix] == ["inventory/"] &&
      [for e in r.expiration : e.days] == [7] &&
      [for e in r.noncurrent_version_expiration : e.noncurrent_days] == [1]
    ) if r.id == "expire-inventory-reports"] == [true]
    error_message = "Reports under inventory/ expire after 7 days, their expired versions a day later."
  }

  # --- redrive reads the reports, asks the idempotency table, announces on the ingest queue
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.redrive.statement : (
      s.actions == toset(["s3:GetObject"]) && s.resources == toset(["${aws_s3_bucket.this["staging"].arn}/inventory/*"])
    )])
    error_message = "Redrive reads the reports (manifest.json and data files) under staging's inventory/."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.redrive.statement : (
      s.actions == toset(["s3:ListBucket"]) && s.resources == toset([aws_s3_bucket.this["staging"].arn]) &&
      anytrue([for c in s.condition : c.test == "StringLike" && c.variable == "s3:prefix" && contains(c.values, "inventory/*")])
    )])
    error_message = "Redrive lists the report folders under inventory/ (and a missing manifest answers 404)."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.redrive.statement : (
      s.actions == toset(["dynamodb:BatchGetItem"]) && s.resources == toset([aws_dynamodb_table.this["idempotency"].arn])
    )])
    error_message = "Redrive asks the idempotency table which versions the forwarder claimed (BatchGetItem)."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.redrive.statement : (
      s.actions == toset(["sqs:SendMessage"]) && s.resources == toset([aws_sqs_queue.ingest.arn])
    )])
    error_message = "Redrive announces versions again on the ingest queue (SendMessage), and on no other."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.redrive.statement : (
      s.actions == toset(["dynamodb:PutItem"]) && s.resources == toset([aws_dynamodb_table.this["ledger"].arn]) &&
      anytrue([for c in s.condition : c.variable == "dynamodb:LeadingKeys" && c.values == tolist(["INVENTORY#landing"])])
    )])
    error_message = "Redrive writes the inventory cursor (delivery/inventory.py CURSOR_KEY) and no other ledger item with PutItem."
  }

  assert {
    condition     = aws_lambda_function.this["redrive"].environment[0].variables["SLUICE_INGEST_QUEUE_URL"] == aws_sqs_queue.ingest.url
    error_message = "SLUICE_INGEST_QUEUE_URL binds the ingest queue's URL."
  }

  assert {
    condition     = local.resource_bindings["SLUICE_INGEST_QUEUE_URL"] == aws_sqs_queue.ingest.url
    error_message = "resource_bindings binds SLUICE_INGEST_QUEUE_URL to the ingest queue."
  }
}

run "customer_key_encrypts_the_reports" {
  command = plan

  variables {
    create_kms_key = true
  }

  assert {
    condition = (
      one(one(one(one(aws_s3_bucket_inventory.landing.destination).bucket).encryption).sse_kms).key_id == aws_kms_key.this[0].arn &&
      length(one(one(one(aws_s3_bucket_inventory.landing.destination).bucket).encryption).sse_s3) == 0
    )
    error_message = "With a customer key, the reports are encrypted with it, as the staging bucket is."
  }

  assert {
    condition = {
      for st in data.aws_iam_policy_document.kms[0].statement : st.sid => join(" ", concat(
        [join(",", sort(st.actions)), join(",", sort(st.resources))],
        [for p in st.principals : "${p.type}=${join(",", sort(p.identifiers))}"],
        sort([for c in st.condition : "${c.test}(${c.variable})=${join(",", c.values)}"]),
      )) if st.sid == "S3InventoryEncryptsLandingReports"
      } == {
      S3InventoryEncryptsLandingReports = "kms:GenerateDataKey * Service=s3.amazonaws.com ArnLike(aws:SourceArn)=arn:aws:s3:::sluice-dev-landing-123456789012 StringEquals(aws:SourceAccount)=123456789012"
    }
    error_message = "The key policy lets S3 Inventory generate data keys for the landing bucket's reports of this account, and nothing else."
  }
}
