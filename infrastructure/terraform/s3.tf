# Three buckets: landing (producers write here), staging (Firehose's windows, errors and
# quarantine reasons, the payload tables' rows, the landing bucket's S3 Inventory reports; Athena
# reads it) and athena (query results). Common settings first.

locals {
  buckets = {
    landing = local.names.landing_bucket
    staging = local.names.staging_bucket
    athena  = local.names.athena_bucket
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Server access logs go to the account's log bucket named by var.access_log_bucket (aws_s3_bucket_logging.this); S3 delivers them only to an SSE-S3 bucket, so Sluice does not create one
  #checkov:skip=CKV2_AWS_61:Every bucket has one: aws_s3_bucket_lifecycle_configuration.landing, .staging and .athena (checkov does not link them to the for_each instances)
  #checkov:skip=CKV2_AWS_62:landing notifies the ingest queue and staging notifies delivery and requeue (aws_s3_bucket_notification); the athena results bucket has no reader of events
  #checkov:skip=CKV_AWS_144:No second region: every landed file is archived to the on-premise MinIO within minutes (a copy outside AWS), staging holds windows only until delivered, athena only query results
  for_each = local.buckets

  bucket        = each.value
  force_destroy = var.force_destroy
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = aws_s3_bucket.this

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = { for key, bucket in aws_s3_bucket.this : key => bucket if key != "athena" }

  bucket = each.value.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each = var.access_log_bucket == null ? {} : aws_s3_bucket.this

  bucket        = each.value.id
  target_bucket = var.access_log_bucket
  target_prefix = "${each.value.bucket}/"
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    # SSE-KMS with bucket keys (DESIGN §7): the customer key when there is one, else aws/s3.
    bucket_key_enabled = true

    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
  }
}

# --- Policies: TLS 1.2 at least; landing uploads readable by delivery; producers' prefixes --

data "aws_iam_policy_document" "tls_only" {
  for_each = aws_s3_bucket.this

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyTlsBelow12"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [each.value.arn, "${each.value.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

data "aws_iam_policy_document" "producers" {
  dynamic "statement" {
    for_each = var.producers

    content {
      sid       = "Producer${replace(title(replace(statement.key, "/[._-]/", " ")), " ", "")}WritesItsPrefix"
      actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
      resources = ["${aws_s3_bucket.this["landing"].arn}/${statement.key}/*"]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }

  dynamic "statement" {
    for_each = var.producers

    content {
      sid       = "Producer${replace(title(replace(statement.key, "/[._-]/", " ")), " ", "")}ListsItsPrefix"
      actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
      resources = [aws_s3_bucket.this["landing"].arn]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }

      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${statement.key}/*"]
      }
    }
  }
}

# Uploads delivery could not read, refused for every principal (producers, this account's roles,
# the console): a storage class other than STANDARD (GLACIER or DEEP_ARCHIVE need a restore
# first; the lifecycle's own transitions are no PutObject and are not affected), SSE-C (S3
# keeps no key) and SSE-KMS under a key other than the bucket's (delivery's role may use only
# the bucket's key). An upload that names no storage class and no encryption gets STANDARD and
# the bucket's default encryption. s3:PutObject also authorises CreateMultipartUpload and the
# destination of CopyObject, which carry the same headers.
#
# The storage class and key-id statements use StringNotEquals with a Null = false guard, not
# StringNotEqualsIfExists: a condition key absent from the request makes a negated operator
# true, and ...IfExists is true when the key is absent too, so either alone would deny every
# upload without the header. The Null guard limits them to requests that send it.
data "aws_iam_policy_document" "landing_uploads" {
  statement {
    sid       = "DenyStorageClassOtherThanStandard"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this["landing"].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-storage-class"
      values   = ["false"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-storage-class"
      values   = ["STANDARD"]
    }
  }

  statement {
    sid       = "DenyCustomerProvidedKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this["landing"].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-customer-algorithm"
      values   = ["false"]
    }
  }

  # With a customer key, only it may be named, by its ARN (S3 compares the header as sent; a
  # producer of another account must use the ARN anyway). SSE-KMS named without a key id means
  # the AWS-managed aws/s3 key, not the bucket's, and aws/s3 cannot be shared with producers of
  # other accounts: refused too. Naming no encryption at all gets the bucket's key.
  dynamic "statement" {
    for_each = local.create_kms_key ? [1] : []

    content {
      sid       = "DenyKmsKeysOtherThanTheBucketKey"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this["landing"].arn}/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "Null"
        variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        values   = ["false"]
      }

      condition {
        test     = "StringNotEquals"
        variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        values   = [local.kms_key_arn]
      }
    }
  }

  dynamic "statement" {
    for_each = local.create_kms_key ? [1] : []

    content {
      sid       = "DenyKmsWithoutTheBucketKey"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this["landing"].arn}/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "StringEquals"
        variable = "s3:x-amz-server-side-encryption"
        values   = ["aws:kms", "aws:kms:dsse"]
      }

      condition {
        test     = "Null"
        variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        values   = ["true"]
      }
    }
  }

  # Without a customer key the bucket's key is this account's aws/s3, which S3 uses when no key
  # is named (SSE-KMS without a key id included: every producer is of this account then). Any
  # key named is another one, which delivery's role has no grant on.
  dynamic "statement" {
    for_each = local.create_kms_key ? [] : [1]

    content {
      sid       = "DenyNamedKmsKeys"
      effect    = "Deny"
      actions   = ["s3:PutObject"]
      resources = ["${aws_s3_bucket.this["landing"].arn}/*"]

      principals {
        type        = "*"
        identifiers = ["*"]
      }

      condition {
        test     = "Null"
        variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
        values   = ["false"]
      }
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  for_each = aws_s3_bucket.this

  source_policy_documents = concat(
    [data.aws_iam_policy_document.tls_only[each.key].json],
    each.key == "landing" ? [data.aws_iam_policy_document.landing_uploads.json] : [],
    each.key == "landing" && length(var.producers) > 0 ? [data.aws_iam_policy_document.producers.json] : [],
    # S3 Inventory delivers the landing bucket's reports to staging (inventory.tf).
    each.key == "staging" ? [data.aws_iam_policy_document.inventory_destination.json] : [],
  )
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  # A bucket policy is refused while Block Public Access is being applied.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# --- Lifecycle ------------------------------------------------------------------------------

locals {
  # The landing lifecycle's two kinds of file (see its rules): inline, on time; by reference,
  # only once delivery tagged it delivered. S3 compares sizes strictly.
  landing_lifecycle_filters = {
    inline-files = {
      smaller_than = local.tunables.forwarder.inline_limit_bytes + 1
      larger_than  = 0
      tags         = {}
    }
    delivered-ref-files = {
      smaller_than = 0
      larger_than  = local.tunables.forwarder.inline_limit_bytes
      tags         = { (local.delivery.delivered_tag) = local.delivered_tag_value }
    }
  }
  # Rule id (`<action>-<kind of file>`) → the kind's filter and the action: the archive mode's,
  # for current versions, and `noncurrent`.
  landing_lifecycle_actions = {
    (var.landing_archive_mode == "deep_archive" ? "deep-archive" : "expire") = var.landing_archive_mode
    noncurrent                                                               = "noncurrent"
  }
  landing_lifecycle_rules = {
    for pair in setproduct(keys(local.landing_lifecycle_actions), keys(local.landing_lifecycle_filters)) :
    "${pair[0]}-${pair[1]}" => merge(local.landing_lifecycle_filters[pair[1]], { action = local.landing_lifecycle_actions[pair[0]] })
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "landing" {
  #checkov:skip=CKV_AWS_300:Rule abort-incomplete-multipart-uploads (filter {}, every key) aborts them; checkov 3.3.30 loses the static rules when it renders the dynamic rule blocks (it passes without them)
  bucket = aws_s3_bucket.this["landing"].id

  # DESIGN §7: without it, objects under 128 KB are never transitioned.
  transition_default_minimum_object_size = var.transition_default_minimum_object_size

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  # What leaves S3 Standard while delivery may still need it: nothing. A file over the inline
  # limit travels by reference, and delivery reads its landing version when its window is
  # delivered, however late (a MinIO outage of days); delivery tags that version delivered once
  # its archive is verified, and only tagged versions over the limit move or expire. A file
  # within the limit travels inside the window and moves or expires on time. Each kind of file
  # gets the mode's rule for its current version (deep_archive: hot for landing_hot_days, then
  # Deep Archive; expire: gone after landing_expire_days, the MinIO archives being the durable
  # copy) and one for its noncurrent versions (overwritten or deleted: readable for
  # landing_noncurrent_days, at least 15, then gone).
  dynamic "rule" {
    for_each = local.landing_lifecycle_rules

    content {
      id     = rule.key
      status = "Enabled"

      # Inline files: by size alone; files by reference: by size and the delivered tag.
      filter {
        object_size_less_than = length(rule.value.tags) == 0 ? rule.value.smaller_than : null

        dynamic "and" {
          for_each = length(rule.value.tags) == 0 ? [] : [rule.value]

          content {
            object_size_greater_than = and.value.larger_than
            tags                     = and.value.tags
          }
        }
      }

      dynamic "transition" {
        for_each = rule.value.action == "deep_archive" ? [1] : []

        content {
          days          = var.landing_hot_days
          storage_class = "DEEP_ARCHIVE"
        }
      }

      dynamic "expiration" {
        for_each = rule.value.action == "expire" ? [1] : []

        content {
          days = var.landing_expire_days
        }
      }

      dynamic "noncurrent_version_expiration" {
        for_each = rule.value.action == "noncurrent" ? [1] : []

        content {
          noncurrent_days = var.landing_noncurrent_days
        }
      }
    }
  }

  # Delete markers left alone are removed.
  rule {
    id     = "expired-delete-markers"
    status = "Enabled"

    filter {}

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "staging" {
  bucket = aws_s3_bucket.this["staging"].id

  transition_default_minimum_object_size = var.transition_default_minimum_object_size

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  # Only windows delivery tagged delivered expire; untagged ones (undelivered) never do.
  rule {
    id     = "expire-delivered-windows"
    status = "Enabled"

    filter {
      and {
        prefix = "buffers/"
        tags   = { (local.delivery.delivered_tag) = local.delivered_tag_value }
      }
    }

    expiration {
      days = local.delivery.staging_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "remove-expired-delete-markers"
    status = "Enabled"

    filter {
      prefix = "buffers/"
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  # The payload tables' rows (glue_athena.tf, docs/tables.md) are derived data, not needed to
  # deliver anything: they expire on time, staging_retention_days after delivery wrote them,
  # whether or not their window has reached MinIO yet; a rewritten object's previous version a
  # day later, then its delete marker.
  rule {
    id     = "expire-table-rows"
    status = "Enabled"

    filter {
      prefix = local.tables_prefix
    }

    expiration {
      days = local.delivery.staging_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "remove-expired-table-delete-markers"
    status = "Enabled"

    filter {
      prefix = local.tables_prefix
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  # The landing bucket's S3 Inventory reports (inventory.tf): one a day, of which redrive reads
  # only the newest. Kept a week, then gone for good (the bucket is versioned: the expired
  # version a day later, its delete marker after it), so the listing of report folders stays
  # a few prefixes long.
  rule {
    id     = "expire-inventory-reports"
    status = "Enabled"

    filter {
      prefix = "${local.inventory_prefix}/"
    }

    expiration {
      days = local.inventory_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "remove-expired-inventory-delete-markers"
    status = "Enabled"

    filter {
      prefix = "${local.inventory_prefix}/"
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  # The daily reports (report.tf, docs/report.md): kept report.retention_days (400: a day can be
  # set beside the same day a year before), then gone for good; a rerun's previous version a
  # day after it was replaced, then its delete marker.
  rule {
    id     = "expire-daily-reports"
    status = "Enabled"

    filter {
      prefix = local.reports_prefix
    }

    expiration {
      days = local.report.retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "remove-expired-report-delete-markers"
    status = "Enabled"

    filter {
      prefix = local.reports_prefix
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "athena" {
  bucket = aws_s3_bucket.this["athena"].id

  rule {
    id     = "expire-query-results"
    status = "Enabled"

    filter {}

    expiration {
      days = var.athena_results_retention_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }
}

# --- Notifications --------------------------------------------------------------------------

resource "aws_s3_bucket_notification" "landing" {
  bucket = aws_s3_bucket.this["landing"].id

  queue {
    id        = "ingest"
    queue_arn = aws_sqs_queue.ingest.arn
    events    = ["s3:ObjectCreated:*"]
  }

  depends_on = [aws_sqs_queue_policy.ingest]
}

resource "aws_s3_bucket_notification" "staging" {
  bucket = aws_s3_bucket.this["staging"].id

  lambda_function {
    id                  = "buffers-to-delivery"
    lambda_function_arn = aws_lambda_alias.this["delivery"].arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "buffers/"
    filter_suffix       = local.firehose.file_extension
  }

  lambda_function {
    id                  = "errors-to-requeue"
    lambda_function_arn = aws_lambda_alias.this["requeue"].arn
    events              = ["s3:ObjectCreated:*"]
    filter_prefix       = "errors/"
  }

  depends_on = [aws_lambda_permission.s3]
}
