# Direct PUT streams (the forwarder spreads records over them by file_id), each with the
# processor on its `live` alias and the staging bucket as destination (DESIGN §2, §5).

locals {
  mib = 1048576

  # The processor's buffer in MB as Firehose expects it (the local Firehose uses the same MiB
  # reading: infrastructure/local/firehose/server.py).
  processor_parameters = {
    LambdaArn               = aws_lambda_alias.this["processor"].arn
    BufferSizeInMBs         = format("%g", local.firehose.processor_buffer_bytes / local.mib)
    BufferIntervalInSeconds = tostring(local.firehose.processor_buffer_seconds)
    NumberOfRetries         = tostring(local.firehose.processor_retries)
  }
}

resource "aws_cloudwatch_log_group" "firehose" {
  #checkov:skip=CKV_AWS_338:Firehose's error logs, for operations, kept var.log_retention_days (prod 90); records never go to them
  name              = "/aws/kinesisfirehose/${local.prefix}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
}

resource "aws_cloudwatch_log_stream" "firehose" {
  for_each = toset(local.stream_names)

  name           = "${each.key}-s3"
  log_group_name = aws_cloudwatch_log_group.firehose.name
}

resource "aws_kinesis_firehose_delivery_stream" "this" {
  #checkov:skip=CKV_AWS_241:CUSTOMER_MANAGED_CMK whenever a customer key exists (create_kms_key, set in env/prod.tfvars, or producers of other accounts); AWS_OWNED_CMK otherwise, by choice
  for_each = toset(local.stream_names)

  name        = each.key
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = local.create_kms_key ? "CUSTOMER_MANAGED_CMK" : "AWS_OWNED_CMK"
    key_arn  = local.kms_key_arn
  }

  extended_s3_configuration {
    role_arn            = aws_iam_role.firehose.arn
    bucket_arn          = aws_s3_bucket.this["staging"].arn
    prefix              = local.firehose.buffers_prefix
    error_output_prefix = local.firehose.errors_prefix
    buffering_size      = local.firehose.destination_buffer_bytes / local.mib
    buffering_interval  = local.firehose.destination_buffer_seconds
    compression_format  = "GZIP"
    file_extension      = local.firehose.file_extension
    kms_key_arn         = local.kms_key_arn

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose[each.key].name
    }

    processing_configuration {
      enabled = true

      processors {
        type = "Lambda"

        dynamic "parameters" {
          for_each = local.processor_parameters

          content {
            parameter_name  = parameters.key
            parameter_value = parameters.value
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = local.firehose.destination_buffer_bytes % local.mib == 0
      error_message = "firehose.destination_buffer_bytes must be a whole number of MiB: Firehose takes the S3 buffer in MiB."
    }
  }

  depends_on = [aws_iam_role_policy.firehose]
}
