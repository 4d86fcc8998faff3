# Customer-managed key, created when asked for or when a producer writes from another account
# (the AWS-managed aws/s3 key cannot be granted to other accounts).

resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description             = "Sluice ${var.environment}: buckets, queues, tables, streams, logs, MinIO secret, alarm topic"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms[0].json
}

resource "aws_kms_alias" "this" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.this[0].key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy; Resource "*" there means this key only, and the account-root statement is AWS's default delegation to IAM policies
  #checkov:skip=CKV_AWS_111:A key policy; Resource "*" there means this key only, and service principals are limited by aws:SourceAccount, the logs encryption context or kms:ViaService
  #checkov:skip=CKV_AWS_356:A key policy; Resource "*" is the only form a key policy accepts and means this key only
  count = local.create_kms_key ? 1 : 0

  # Key administration and use through IAM policies of this account (each role below grants
  # itself only what it needs).
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # DESIGN §7: S3 publishes to the encrypted ingest queue only if it may use the queue's key.
  statement {
    sid       = "S3PublishesToEncryptedQueues"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  # S3 Inventory encrypts the landing bucket's reports with this key as it writes them to
  # staging (inventory.tf): for that configuration's source bucket, in this account, only. The
  # bucket's ARN is built from its name: the key comes before the buckets.
  statement {
    sid       = "S3InventoryEncryptsLandingReports"
    actions   = ["kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:s3:::${local.names.landing_bucket}"]
    }
  }

  # CloudWatch alarms publish to the encrypted alarm topic.
  statement {
    sid       = "CloudWatchPublishesToEncryptedTopic"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsLogGroups"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  # Producers of other accounts upload through S3 only (multipart uploads need Decrypt too).
  dynamic "statement" {
    for_each = local.cross_account_producers ? [1] : []

    content {
      sid       = "ProducersEncryptThroughS3"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = sort(distinct(flatten(values(var.producers))))
      }

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }
}
