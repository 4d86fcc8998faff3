# The six functions (DESIGN §2), each with its log group, a published version and a `live`
# alias that every trigger targets (DESIGN §7). Packages come from `make package`.

resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_338:Operational logs kept var.log_retention_days (prod 90); the durable record of each file is its MinIO archive and manifest, not the logs
  for_each = local.log_group_names

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:A DLQ serves asynchronous invocations only: delivery and requeue (from S3) have on-failure SQS destinations on their live alias; redrive (from the scheduler) redoes a failed run's work at its next run; the forwarder (SQS mapping, the queue has its DLQ) and the processor (Firehose, failures go to errors/) are invoked synchronously
  #checkov:skip=CKV_AWS_173:The environment holds only Powertools settings and resource names, URLs and ARNs (no secrets: MinIO credentials are read from Secrets Manager); Lambda encrypts it at rest with its AWS-managed key
  #checkov:skip=CKV_AWS_272:Packages come from make package in the same pipeline that applies them (filebase64sha256 pins each zip); the design has no AWS Signer profile to enforce
  for_each = local.functions

  function_name    = local.function_names[each.key]
  description      = "Sluice ${var.environment}: ${each.value.handler}"
  role             = aws_iam_role.lambda[each.key].arn
  runtime          = "python3.12"
  architectures    = [var.lambda_architecture]
  handler          = each.value.handler
  filename         = "${local.package_dir}/${each.key}.zip"
  source_code_hash = filebase64sha256("${local.package_dir}/${each.key}.zip")
  memory_size      = each.value.memory_mb
  timeout          = each.value.timeout_seconds
  publish          = true

  reserved_concurrent_executions = each.value.reserved_concurrency

  ephemeral_storage {
    size = each.value.ephemeral_storage_mb
  }

  environment {
    variables = local.function_environment[each.key]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text" # Powertools writes JSON lines itself
    log_group  = aws_cloudwatch_log_group.lambda[each.key].name
  }

  dynamic "vpc_config" {
    for_each = var.vpc == null ? [] : [var.vpc]

    content {
      subnet_ids         = vpc_config.value.subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  lifecycle {
    precondition {
      # Delivery spools an archive part (at most max(archive_max_input_bytes, max_file_bytes) of
      # input: a larger file gets a part of its own) beside the staged window it downloads.
      condition = each.key != "delivery" || (
        each.value.ephemeral_storage_mb * local.mib >=
        max(local.delivery.archive_max_input_bytes, local.tunables.forwarder.max_file_bytes) + local.firehose.destination_buffer_bytes
      )
      error_message = "delivery's ephemeral storage (${each.value.ephemeral_storage_mb} MB) cannot hold an archive part of max(archive_max_input_bytes, max_file_bytes) plus a staged window."
    }
  }

  depends_on = [aws_iam_role_policy.lambda]
}

resource "aws_lambda_alias" "this" {
  for_each = aws_lambda_function.this

  name             = local.alias_name
  description      = "What every trigger of ${each.value.function_name} invokes"
  function_name    = each.value.function_name
  function_version = each.value.version

  dynamic "routing_config" {
    for_each = contains(keys(var.live_routing), each.key) ? [var.live_routing[each.key]] : []

    content {
      additional_version_weights = { (routing_config.value.version) = routing_config.value.weight }
    }
  }
}

# --- Triggers -------------------------------------------------------------------------------

resource "aws_lambda_event_source_mapping" "ingest" {
  event_source_arn                   = aws_sqs_queue.ingest.arn
  function_name                      = aws_lambda_alias.this["forwarder"].arn
  batch_size                         = local.ingest.batch_size
  maximum_batching_window_in_seconds = local.ingest.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = local.ingest.maximum_concurrency
  }

  # Nothing is consumed before the streams the forwarder writes to exist.
  depends_on = [aws_kinesis_firehose_delivery_stream.this, aws_dynamodb_table.this]
}

resource "aws_lambda_permission" "s3" {
  for_each = toset(["delivery", "requeue"])

  statement_id   = "StagingBucketInvokes"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.this[each.key].function_name
  qualifier      = aws_lambda_alias.this[each.key].name
  principal      = "s3.amazonaws.com"
  source_arn     = aws_s3_bucket.this["staging"].arn
  source_account = local.account_id
}

# Async configuration lives on the alias S3 invokes (DESIGN §7).
resource "aws_lambda_function_event_invoke_config" "delivery" {
  function_name                = aws_lambda_function.this["delivery"].function_name
  qualifier                    = aws_lambda_alias.this["delivery"].name
  maximum_retry_attempts       = local.delivery.async_retry_attempts
  maximum_event_age_in_seconds = local.delivery.async_max_event_age_seconds

  destination_config {
    on_failure {
      destination = aws_sqs_queue.delivery_dlq.arn
    }
  }
}

# Lambda's default retries and event age; what still fails rests in the requeue DLQ.
resource "aws_lambda_function_event_invoke_config" "requeue" {
  function_name = aws_lambda_function.this["requeue"].function_name
  qualifier     = aws_lambda_alias.this["requeue"].name

  destination_config {
    on_failure {
      destination = aws_sqs_queue.requeue_dlq.arn
    }
  }
}

# Redrive (EventBridge Scheduler invokes it asynchronously) is never retried: a failed run's
# work is redone by the next scheduled run, `redrive.schedule_minutes` later, and a retry would
# only run beside or just before it. An event still queued after one interval (its run was
# throttled: concurrency 1, the previous run still going) is dropped for the same reason.
resource "aws_lambda_function_event_invoke_config" "redrive" {
  function_name                = aws_lambda_function.this["redrive"].function_name
  qualifier                    = aws_lambda_alias.this["redrive"].name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = local.redrive_event_age_seconds
}
