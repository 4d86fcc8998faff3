# Tables, the MinIO secret and the redrive schedule.

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

run "tables_secret_and_schedule" {
  command = plan

  assert {
    condition = {
      for key, t in aws_dynamodb_table.this : key => "${t.hash_key}/${t.ttl[0].attribute_name}"
      } == {
      idempotency = "id/expiration"
      ledger      = "pk/expires_at"
    }
    error_message = "Keys and TTL attributes must be those transform/idempotency.py and delivery/ledger.py write."
  }

  assert {
    condition = alltrue([for t in aws_dynamodb_table.this : (
      t.billing_mode == "PAY_PER_REQUEST" && t.ttl[0].enabled && t.point_in_time_recovery[0].enabled && t.deletion_protection_enabled
    )])
    error_message = "Tables are on-demand, with TTL, point-in-time recovery and deletion protection."
  }

  # --- secret named as bound
  assert {
    condition     = aws_secretsmanager_secret.minio.name == "sluice-prod/minio"
    error_message = "The MinIO secret is named as SLUICE_MINIO_SECRET binds it."
  }

  # --- redrive runs on schedule
  assert {
    condition = (
      aws_scheduler_schedule.redrive.schedule_expression == "rate(5 minutes)" &&
      aws_scheduler_schedule.redrive.target[0].arn == aws_lambda_alias.this["redrive"].arn
    )
    error_message = "Redrive's live alias runs every redrive.schedule_minutes (5)."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.scheduler.statement : (
      s.actions == toset(["lambda:InvokeFunction"]) && s.resources == toset([aws_lambda_alias.this["redrive"].arn])
    )])
    error_message = "The scheduler may invoke redrive's alias only."
  }
}

