# Run once per variable file by check.sh:
#   terraform test -test-directory=tests/env -var-file=env/<ENV>.tfvars
# The file's values pass every validation and give a complete, consistent stack.

mock_provider "aws" {
  source = "./tests/mocks"
  # Mocked computed values (ARNs, URLs, versions) are known at plan time, so assertions on
  # them need no apply.
  override_during = plan
}

variables {
  package_dir = "./tests/fixtures/lambda"
}

run "environment_file_builds_the_stack" {
  command = plan

  assert {
    condition     = alltrue([for f in aws_lambda_function.this : startswith(f.function_name, "sluice-${var.environment}-")])
    error_message = "Resources are named after the environment."
  }

  assert {
    condition     = length(aws_lambda_function.this) == 7 && length(aws_kinesis_firehose_delivery_stream.this) == 2 && length(aws_dynamodb_table.this) == 2
    error_message = "Every environment deploys the whole pipeline."
  }

  assert {
    condition     = var.environment != "prod" || (var.landing_archive_mode == "deep_archive" && length(aws_kms_key.this) == 1 && alltrue([for t in aws_dynamodb_table.this : t.deletion_protection_enabled]))
    error_message = "prod keeps landed files in Deep Archive, under the customer key, with protected tables."
  }
}
