# Buckets: TLS-only policies, public access, ownership, SSE-KMS with bucket keys, lifecycle per
# landing_archive_mode, landing uploads delivery can read, producers' prefixes, notifications on
# the `live` aliases. tests/unit/test_landing_bucket_policy.py evaluates the rendered policy.

mock_provider "aws" {
  source = "./tests/mocks"
  # Mocked computed values (ARNs, URLs, versions) are known at plan time, so assertions on
  # them need no apply.
  override_during = plan
}

variables {
  environment = "prod"
  package_dir = "./tests/fixtures/lambda"
}

run "buckets_policies_lifecycle_and_notifications" {
  command = plan

  assert {
    condition = alltrue([for key in ["landing", "staging", "athena"] : anytrue([
      for s in data.aws_iam_policy_document.tls_only[key].statement : (
        s.effect == "Deny" && contains(s.actions, "s3:*") &&
        length(s.resources) == 2 &&
        anytrue([for p in s.principals : p.type == "*" && contains(p.identifiers, "*")]) &&
        anytrue([for c in s.condition : c.test == "Bool" && c.variable == "aws:SecureTransport" && contains(c.values, "false")])
      )
    ])])
    error_message = "Every bucket must deny requests without TLS."
  }

  assert {
    condition = alltrue([for key in ["landing", "staging", "athena"] : anytrue([
      for s in data.aws_iam_policy_document.tls_only[key].statement : (
        s.effect == "Deny" && contains(s.actions, "s3:*") &&
        anytrue([for c in s.condition : c.test == "NumericLessThan" && c.variable == "s3:TlsVersion" && contains(c.values, "1.2")])
      )
    ])])
    error_message = "Every bucket must deny TLS below 1.2."
  }

  assert {
    condition = alltrue([for b in aws_s3_bucket_public_access_block.this : (
      b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets
    )])
    error_message = "Public access must be blocked on every bucket."
  }

  assert {
    condition     = alltrue([for o in aws_s3_bucket_ownership_controls.this : o.rule[0].object_ownership == "BucketOwnerEnforced"])
    error_message = "Buckets must enforce bucket ownership (no ACLs)."
  }

  assert {
    condition = alltrue([for e in aws_s3_bucket_server_side_encryption_configuration.this : (
      one(e.rule).bucket_key_enabled &&
      one(one(e.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms"
    )])
    error_message = "Buckets must use SSE-KMS with bucket keys."
  }

  assert {
    condition     = aws_s3_bucket_versioning.this["landing"].versioning_configuration[0].status == "Enabled" && aws_s3_bucket_versioning.this["staging"].versioning_configuration[0].status == "Enabled"
    error_message = "Landing and staging buckets are versioned."
  }

  # --- landing: no upload delivery could not read (this run has no customer key)
  assert {
    condition = {
      for st in data.aws_iam_policy_document.landing_uploads.statement : st.sid => join(" ", concat(
        [st.effect, join(",", sort(st.actions)), join(",", sort(st.resources))],
        [for p in st.principals : "${p.type}=${join(",", sort(p.identifiers))}"],
        sort([for c in st.condition : "${c.test}(${c.variable})=${join(",", c.values)}"]),
      ))
      } == {
      DenyStorageClassOtherThanStandard = "Deny s3:PutObject ${aws_s3_bucket.this["landing"].arn}/* *=* Null(s3:x-amz-storage-class)=false StringNotEquals(s3:x-amz-storage-class)=STANDARD"
      DenyCustomerProvidedKeys          = "Deny s3:PutObject ${aws_s3_bucket.this["landing"].arn}/* *=* Null(s3:x-amz-server-side-encryption-customer-algorithm)=false"
      DenyNamedKmsKeys                  = "Deny s3:PutObject ${aws_s3_bucket.this["landing"].arn}/* *=* Null(s3:x-amz-server-side-encryption-aws-kms-key-id)=false"
    }
    error_message = "Without a customer key, landing denies every principal uploads in a storage class other than STANDARD (only when one is named), with SSE-C, or naming any KMS key (aws/s3 is the bucket's)."
  }

  assert {
    condition     = !anytrue([for st in data.aws_iam_policy_document.landing_uploads.statement : anytrue([for c in st.condition : endswith(c.test, "IfExists")])])
    error_message = "No ...IfExists in the denies: it is true when the header is absent, so it would deny plain uploads."
  }

  # --- staging expires only delivered windows
  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.staging.rule : (
      [for e in r.expiration : e.days] == [30] &&
      [for f in r.filter : [for a in f.and : a.prefix == "buffers/" && a.tags == tomap({ "sluice-delivered" = "true" })]] == [[true]]
    ) if r.id == "expire-delivered-windows"] == [true]
    error_message = "Staged windows expire after staging_retention_days only once tagged sluice-delivered=true."
  }

  assert {
    # A rule with an expiration either filters on the delivered tag, only removes delete markers,
    # or is limited to S3 Inventory's reports under inventory/ (inventory.tf), to the payload
    # tables' rows under tables/ (derived data, glue_athena.tf) or to the daily reports under
    # reports/daily/ (report.tf).
    condition = alltrue([for r in aws_s3_bucket_lifecycle_configuration.staging.rule : (
      length(r.expiration) == 0 ? true : (
        length(flatten([for f in r.filter : [for a in f.and : a if length(coalesce(a.tags, {})) > 0]])) > 0 ? true :
        contains([["inventory/"], ["tables/"], ["reports/daily/"]], [for f in r.filter : f.prefix]) ? true :
        alltrue([for e in r.expiration : e.expired_object_delete_marker == true])
      )
    )])
    error_message = "No rule may expire untagged (undelivered) staging objects; only inventory/ reports, tables/ rows and reports/daily/ expire on time."
  }

  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.staging.rule : (
      [for f in r.filter : f.prefix] == ["tables/"] &&
      [for e in r.expiration : e.days] == [30] &&
      [for n in r.noncurrent_version_expiration : n.noncurrent_days] == [1]
    ) if r.id == "expire-table-rows"] == [true]
    error_message = "The payload tables' rows expire after staging_retention_days (30), a rewritten object's previous version a day later."
  }

  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.staging.rule : (
      [for f in r.filter : f.prefix] == ["tables/"] &&
      [for e in r.expiration : e.expired_object_delete_marker] == [true]
    ) if r.id == "remove-expired-table-delete-markers"] == [true]
    error_message = "The expired rows' delete markers are removed."
  }

  # --- notifications target live aliases
  assert {
    condition = (
      length(aws_s3_bucket_notification.landing.queue) == 1 &&
      one(aws_s3_bucket_notification.landing.queue).queue_arn == aws_sqs_queue.ingest.arn &&
      contains(one(aws_s3_bucket_notification.landing.queue).events, "s3:ObjectCreated:*")
    )
    error_message = "The landing bucket notifies the ingest queue of every created object."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.queue["ingest"].statement : (
      s.effect != "Deny" && contains(s.actions, "sqs:SendMessage") &&
      anytrue([for p in s.principals : contains(p.identifiers, "s3.amazonaws.com")]) &&
      anytrue([for c in s.condition : c.variable == "aws:SourceArn" && contains(c.values, aws_s3_bucket.this["landing"].arn)])
    )])
    error_message = "The ingest queue policy lets the landing bucket (only) send."
  }

  assert {
    condition = {
      for f in aws_s3_bucket_notification.staging.lambda_function : f.filter_prefix => f.lambda_function_arn
      } == {
      "buffers/" = aws_lambda_alias.this["delivery"].arn
      "errors/"  = aws_lambda_alias.this["requeue"].arn
    }
    error_message = "buffers/ invokes delivery, errors/ invokes requeue, each on its live alias."
  }

  assert {
    condition = alltrue([for key in ["delivery", "requeue"] : (
      aws_lambda_permission.s3[key].qualifier == "live" &&
      aws_lambda_permission.s3[key].principal == "s3.amazonaws.com" &&
      aws_lambda_permission.s3[key].source_arn == aws_s3_bucket.this["staging"].arn
    )])
    error_message = "S3 may invoke delivery and requeue on their live aliases, from the staging bucket only."
  }
}

run "deep_archive_mode" {
  command = plan

  variables {
    landing_archive_mode = "deep_archive"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.landing.transition_default_minimum_object_size == "varies_by_storage_class"
    error_message = "The minimum object size must be set, or files under 128 KB are never transitioned."
  }

  assert {
    condition = length([for r in aws_s3_bucket_lifecycle_configuration.landing.rule : r if(
      r.status == "Enabled" &&
      length([for t in r.transition : t if t.days == 7 && t.storage_class == "DEEP_ARCHIVE"]) == 1
    )]) == 2
    error_message = "deep_archive: 7 days hot, then Glacier Deep Archive (inline files, and files by reference once delivered)."
  }

  assert {
    condition = toset([for r in aws_s3_bucket_lifecycle_configuration.landing.rule : r.id]) == toset([
      "abort-incomplete-multipart-uploads", "deep-archive-inline-files", "deep-archive-delivered-ref-files",
      "noncurrent-inline-files", "noncurrent-delivered-ref-files", "expired-delete-markers",
    ])
    error_message = "deep_archive never expires current versions: no expire rule."
  }

  # Nothing delivery may still read leaves S3 Standard: a file over the inline limit (65536
  # bytes, read by reference) moves or goes only once delivery tagged its version delivered.
  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.landing.rule : (
      r.filter[0].object_size_less_than == 65537
    ) if strcontains(r.id, "inline-files")] == [true, true]
    error_message = "Inline files (at most the 65536-byte inline limit) move and go on time."
  }

  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.landing.rule : (
      r.filter[0].and[0].object_size_greater_than == 65536 && r.filter[0].and[0].tags == tomap({ "sluice-delivered" = "true" })
    ) if strcontains(r.id, "delivered-ref-files")] == [true, true]
    error_message = "Files over the inline limit move to Deep Archive or go only once tagged delivered."
  }

  assert {
    condition = anytrue([for r in aws_s3_bucket_lifecycle_configuration.landing.rule : (
      anytrue([for e in r.noncurrent_version_expiration : e.noncurrent_days >= 15])
    )])
    error_message = "Noncurrent landing versions live at least 15 days."
  }

  assert {
    condition = alltrue([for config in [aws_s3_bucket_lifecycle_configuration.landing, aws_s3_bucket_lifecycle_configuration.staging, aws_s3_bucket_lifecycle_configuration.athena] : anytrue([
      for r in config.rule : anytrue([for a in r.abort_incomplete_multipart_upload : a.days_after_initiation == 1])
    ])])
    error_message = "Every bucket aborts incomplete multipart uploads."
  }
}

run "expire_mode" {
  command = plan

  variables {
    landing_archive_mode = "expire"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.landing.transition_default_minimum_object_size == "varies_by_storage_class"
    error_message = "The minimum object size is set in expire mode too."
  }

  assert {
    condition     = length([for r in aws_s3_bucket_lifecycle_configuration.landing.rule : r if length(r.transition) > 0]) == 0
    error_message = "expire mode transitions nothing."
  }

  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.landing.rule : (
      r.status == "Enabled" && [for e in r.expiration : e.days] == [30]
    ) if startswith(r.id, "expire-")] == [true, true]
    error_message = "expire mode expires every current version after landing_expire_days (30): inline files on time, files by reference once tagged delivered."
  }

  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.landing.rule : (
      r.filter[0].and[0].object_size_greater_than == 65536 && r.filter[0].and[0].tags == tomap({ "sluice-delivered" = "true" })
    ) if r.id == "expire-delivered-ref-files"] == [true]
    error_message = "expire mode expires a file over the inline limit only once tagged delivered."
  }
}

run "landing_expire_days_below_the_dlq_window_refused" {
  command = plan

  variables {
    landing_archive_mode = "expire"
    landing_expire_days  = 7
  }

  expect_failures = [var.landing_expire_days]
}

run "producers_get_their_own_prefix" {
  command = plan

  variables {
    producers = {
      acme   = ["arn:aws:iam::123456789012:role/acme-uploader"]
      globex = ["arn:aws:iam::210987654321:role/globex-sftp"]
    }
  }

  assert {
    condition = jsonencode({
      for s in data.aws_iam_policy_document.producers.statement : one(s.resources) => sort(flatten([for p in s.principals : p.identifiers]))
      if contains(s.actions, "s3:PutObject")
      }) == jsonencode({
      "${aws_s3_bucket.this["landing"].arn}/acme/*"   = ["arn:aws:iam::123456789012:role/acme-uploader"]
      "${aws_s3_bucket.this["landing"].arn}/globex/*" = ["arn:aws:iam::210987654321:role/globex-sftp"]
    })
    error_message = "Each producer may PUT under its own prefix only."
  }

  assert {
    condition     = length(aws_kms_key.this) == 1 && output.kms_key_arn == aws_kms_key.this[0].arn
    error_message = "A producer of another account requires the customer key."
  }

  assert {
    condition     = one(one(aws_s3_bucket_server_side_encryption_configuration.this["landing"].rule).apply_server_side_encryption_by_default).kms_master_key_id == aws_kms_key.this[0].arn
    error_message = "With a customer key, the landing bucket encrypts with it."
  }

  assert {
    condition = {
      for st in data.aws_iam_policy_document.landing_uploads.statement : st.sid => join(" ", concat(
        [st.effect, join(",", sort(st.actions)), join(",", sort(st.resources))],
        [for p in st.principals : "${p.type}=${join(",", sort(p.identifiers))}"],
        sort([for c in st.condition : "${c.test}(${c.variable})=${join(",", c.values)}"]),
      ))
      } == {
      DenyStorageClassOtherThanStandard = "Deny s3:PutObject ${aws_s3_bucket.this["landing"].arn}/* *=* Null(s3:x-amz-storage-class)=false StringNotEquals(s3:x-amz-storage-class)=STANDARD"
      DenyCustomerProvidedKeys          = "Deny s3:PutObject ${aws_s3_bucket.this["landing"].arn}/* *=* Null(s3:x-amz-server-side-encryption-customer-algorithm)=false"
      DenyKmsKeysOtherThanTheBucketKey  = "Deny s3:PutObject ${aws_s3_bucket.this["landing"].arn}/* *=* Null(s3:x-amz-server-side-encryption-aws-kms-key-id)=false StringNotEquals(s3:x-amz-server-side-encryption-aws-kms-key-id)=${aws_kms_key.this[0].arn}"
      DenyKmsWithoutTheBucketKey        = "Deny s3:PutObject ${aws_s3_bucket.this["landing"].arn}/* *=* Null(s3:x-amz-server-side-encryption-aws-kms-key-id)=true StringEquals(s3:x-amz-server-side-encryption)=aws:kms,aws:kms:dsse"
    }
    error_message = "With a customer key, landing denies every principal, producers included, uploads naming another key, or SSE-KMS without naming it, besides other storage classes and SSE-C."
  }
}

run "same_account_producers_keep_aws_managed_key" {
  command = plan

  variables {
    producers = {
      acme = ["arn:aws:iam::123456789012:role/acme-uploader"]
    }
  }

  assert {
    condition     = length(aws_kms_key.this) == 0 && output.kms_key_arn == null
    error_message = "Producers of this account need no customer key."
  }
}

run "bad_producer_principal_refused" {
  command = plan

  variables {
    producers = {
      acme = ["acme-uploader"]
    }
  }

  expect_failures = [var.producers]
}

run "access_logs_go_to_the_named_log_bucket" {
  command = plan

  variables {
    access_log_bucket = "acme-central-access-logs"
  }

  assert {
    condition = alltrue([for key in ["landing", "staging", "athena"] : (
      aws_s3_bucket_logging.this[key].target_bucket == "acme-central-access-logs" &&
      aws_s3_bucket_logging.this[key].target_prefix == "${aws_s3_bucket.this[key].bucket}/"
    )])
    error_message = "Every bucket must log its accesses to the named bucket, under its own name."
  }
}

run "no_access_log_bucket_no_logging" {
  command = plan

  assert {
    condition     = length(aws_s3_bucket_logging.this) == 0
    error_message = "Without access_log_bucket there is nothing to log to."
  }
}

run "bad_access_log_bucket_refused" {
  command = plan

  variables {
    access_log_bucket = "Not_A_Bucket"
  }

  expect_failures = [var.access_log_bucket]
}
