# Firehose: stream count and names, both buffers from tunables.json, GZIP, prefixes, processor
# on the `live` alias, and a role that writes only those prefixes.

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

run "streams_buffer_and_compress_as_tuned" {
  command = plan

  assert {
    condition     = length(aws_kinesis_firehose_delivery_stream.this) == 2
    error_message = "firehose.stream_count is 2 in tunables.json."
  }

  assert {
    condition     = join(",", output.firehose_streams) == "sluice-dev-0,sluice-dev-1"
    error_message = "Streams must be named as SLUICE_FIREHOSE_STREAMS lists them."
  }

  assert {
    condition = alltrue([for s in aws_kinesis_firehose_delivery_stream.this : (
      s.destination == "extended_s3" &&
      s.extended_s3_configuration[0].buffering_size == 64 &&
      s.extended_s3_configuration[0].buffering_interval == 60 &&
      s.extended_s3_configuration[0].compression_format == "GZIP" &&
      s.extended_s3_configuration[0].file_extension == ".json.gz"
    )])
    error_message = "Destination buffer must be 64 MiB / 60 s, GZIP, .json.gz."
  }

  assert {
    condition = alltrue([for s in aws_kinesis_firehose_delivery_stream.this : (
      s.extended_s3_configuration[0].prefix == "buffers/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/" &&
      s.extended_s3_configuration[0].error_output_prefix == "errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
    )])
    error_message = "Prefixes must be those of tunables.json."
  }

  assert {
    condition = alltrue([for s in aws_kinesis_firehose_delivery_stream.this : (
      s.extended_s3_configuration[0].processing_configuration[0].enabled &&
      s.extended_s3_configuration[0].processing_configuration[0].processors[0].type == "Lambda" &&
      { for p in s.extended_s3_configuration[0].processing_configuration[0].processors[0].parameters : p.parameter_name => p.parameter_value } == {
        LambdaArn               = aws_lambda_alias.this["processor"].arn
        BufferSizeInMBs         = "1"
        BufferIntervalInSeconds = "10"
        NumberOfRetries         = "3"
      }
    )])
    error_message = "The processor runs on its live alias with a 1 MB / 10 s buffer and 3 retries."
  }

  assert {
    condition     = endswith(aws_lambda_alias.this["processor"].arn, ":live") && aws_lambda_alias.this["processor"].name == "live"
    error_message = "The processor's alias is `live`."
  }

  assert {
    condition = alltrue([for s in aws_kinesis_firehose_delivery_stream.this : (
      s.server_side_encryption[0].enabled &&
      s.extended_s3_configuration[0].cloudwatch_logging_options[0].enabled
    )])
    error_message = "Streams are encrypted and log delivery errors."
  }
}

run "role_writes_only_the_destination_prefixes" {
  command = plan

  # Object-level actions: only buffers/ (the streams' prefix) and errors/ (their error output
  # prefix), never the whole bucket.
  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.firehose.statement : s.resources
      if length(setintersection(s.actions, ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"])) > 0
      ])) == toset([
      "${aws_s3_bucket.this["staging"].arn}/buffers/*",
      "${aws_s3_bucket.this["staging"].arn}/errors/*",
    ])
    error_message = "The Firehose role's object-level S3 resources must be exactly staging's buffers/* and errors/*."
  }

  assert {
    condition = alltrue([for s in aws_kinesis_firehose_delivery_stream.this : (
      startswith(s.extended_s3_configuration[0].prefix, "buffers/") &&
      startswith(s.extended_s3_configuration[0].error_output_prefix, "errors/")
    )])
    error_message = "The streams must write under the prefixes their role may write."
  }

  # Bucket-level actions stay on the bucket ARN, and no S3 action on anything else.
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.firehose.statement : (
      s.resources == toset([aws_s3_bucket.this["staging"].arn])
    ) if length(setintersection(s.actions, ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"])) > 0])
    error_message = "GetBucketLocation, ListBucket and ListBucketMultipartUploads are on the staging bucket's ARN only."
  }

  assert {
    condition = toset(flatten([
      for s in data.aws_iam_policy_document.firehose.statement : [for a in s.actions : a if startswith(a, "s3:")]
      ])) == toset([
      "s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject",
      "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject",
    ])
    error_message = "The Firehose role keeps the S3 actions AWS documents for an S3 destination, and no others."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.firehose.statement : (
      s.actions == toset(["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"]) &&
      s.resources == toset(["arn:aws:lambda:eu-west-2:123456789012:function:sluice-dev-processor:live"])
    )])
    error_message = "The Firehose role invokes the processor's live alias, and nothing else."
  }
}
