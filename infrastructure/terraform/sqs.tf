# Ingest queue (S3 events of the landing bucket) with its DLQ; delivery's and requeue's
# on-failure destinations. Encryption S3 can publish through (DESIGN §7): SQS-managed SSE, or
# the customer key whose policy lets s3.amazonaws.com use it — never aws/sqs.

locals {
  queue_encryption = {
    sqs_managed_sse_enabled           = local.create_kms_key ? null : true
    kms_master_key_id                 = local.kms_key_arn
    kms_data_key_reuse_period_seconds = local.create_kms_key ? 300 : null
  }

  # AWS guidance (DESIGN §5): a message must stay invisible through six attempts of the forwarder
  # plus the batching window, or it is received again while still being forwarded.
  minimum_visibility_timeout = 6 * local.functions["forwarder"].timeout_seconds + local.ingest.batching_window_seconds
}

resource "aws_sqs_queue" "ingest_dlq" {
  name                              = local.names.ingest_dlq
  message_retention_seconds         = local.ingest.dlq_retention_seconds
  sqs_managed_sse_enabled           = local.queue_encryption.sqs_managed_sse_enabled
  kms_master_key_id                 = local.queue_encryption.kms_master_key_id
  kms_data_key_reuse_period_seconds = local.queue_encryption.kms_data_key_reuse_period_seconds
}

resource "aws_sqs_queue" "ingest" {
  name                              = local.names.ingest_queue
  message_retention_seconds         = local.ingest.queue_retention_seconds
  visibility_timeout_seconds        = local.ingest.visibility_timeout_seconds
  receive_wait_time_seconds         = 20
  sqs_managed_sse_enabled           = local.queue_encryption.sqs_managed_sse_enabled
  kms_master_key_id                 = local.queue_encryption.kms_master_key_id
  kms_data_key_reuse_period_seconds = local.queue_encryption.kms_data_key_reuse_period_seconds

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.ingest_dlq.arn
    maxReceiveCount     = local.ingest.max_receive_count
  })

  lifecycle {
    precondition {
      condition     = local.ingest.visibility_timeout_seconds >= local.minimum_visibility_timeout
      error_message = "The ingest queue's visibility timeout (${local.ingest.visibility_timeout_seconds} s) must be at least 6 x the forwarder timeout + the batching window = ${local.minimum_visibility_timeout} s."
    }

    precondition {
      condition     = local.ingest.dlq_retention_seconds >= local.ingest.queue_retention_seconds
      error_message = "The ingest DLQ must keep messages at least as long as the ingest queue."
    }
  }
}

resource "aws_sqs_queue" "delivery_dlq" {
  name                              = local.names.delivery_dlq
  message_retention_seconds         = local.delivery.dlq_retention_seconds
  visibility_timeout_seconds        = 60
  sqs_managed_sse_enabled           = local.queue_encryption.sqs_managed_sse_enabled
  kms_master_key_id                 = local.queue_encryption.kms_master_key_id
  kms_data_key_reuse_period_seconds = local.queue_encryption.kms_data_key_reuse_period_seconds
}

# requeue raises when records cannot be put back; after Lambda's retries the event rests here
# (transform/requeue.py) until an operator invokes requeue with it again.
resource "aws_sqs_queue" "requeue_dlq" {
  name                              = local.names.requeue_dlq
  message_retention_seconds         = local.ingest.dlq_retention_seconds
  sqs_managed_sse_enabled           = local.queue_encryption.sqs_managed_sse_enabled
  kms_master_key_id                 = local.queue_encryption.kms_master_key_id
  kms_data_key_reuse_period_seconds = local.queue_encryption.kms_data_key_reuse_period_seconds
}

# --- Policies -------------------------------------------------------------------------------

locals {
  queues = {
    ingest       = aws_sqs_queue.ingest
    ingest_dlq   = aws_sqs_queue.ingest_dlq
    delivery_dlq = aws_sqs_queue.delivery_dlq
    requeue_dlq  = aws_sqs_queue.requeue_dlq
  }
}

data "aws_iam_policy_document" "queue" {
  for_each = local.queues

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value.arn]

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

  dynamic "statement" {
    for_each = each.key == "ingest" ? [1] : []

    content {
      sid       = "LandingBucketSendsEvents"
      actions   = ["sqs:SendMessage"]
      resources = [each.value.arn]

      principals {
        type        = "Service"
        identifiers = ["s3.amazonaws.com"]
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [aws_s3_bucket.this["landing"].arn]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "ingest" {
  queue_url = aws_sqs_queue.ingest.id
  policy    = data.aws_iam_policy_document.queue["ingest"].json
}

resource "aws_sqs_queue_policy" "dlq" {
  for_each = { for key, queue in local.queues : key => queue if key != "ingest" }

  queue_url = each.value.id
  policy    = data.aws_iam_policy_document.queue[each.key].json
}
