# The daily report (delivery/report.py, docs/report.md). The function is one of
# tunables.functions: lambda.tf makes it with its log group, alias and role, and alarms.tf its
# errors and throttles alarms. Here: its schedule, its topic, what its role may do, and its alarm
# for a report that does not run is in alarms.tf (`report-not-running`).
#
# Where the reports are kept: reports/daily/<day>.{json,txt,html} in the staging bucket, not a
# bucket of their own. Staging already holds Sluice's own operational output (reconcile/,
# inventory/) under the deployment's key, TLS only, versioned, public access blocked, with one
# lifecycle rule per prefix; a day's report is three small objects. A bucket of its own would
# repeat all of that for about 100 KB a day. The rule `expire-daily-reports` (s3.tf) keeps them
# report.retention_days (400).

locals {
  reports_prefix = "reports/daily/"

  # The staging prefixes the report lists: the day's staged windows, Firehose's error output of
  # the day, and (for a 404 rather than a 403 when there is none) a file's reason file and the
  # day's report itself.
  report_listed_prefixes = ["buffers/*", "errors/processing-failed/*", "quarantine/reasons/*", "${local.reports_prefix}*"]

  # EventBridge Scheduler's cron: minute, hour, day of month, month, day of week, year.
  report_schedule = "cron(${local.report.schedule_minute} ${local.report.schedule_hour_utc} * * ? *)"

  # The deployment's alarms (alarms.tf names them `<prefix>-<key>`).
  deployment_alarm_arns = "arn:${local.partition}:cloudwatch:${local.region}:${local.account_id}:alarm:${local.prefix}-*"
}

resource "aws_sns_topic" "reports" {
  name = "${local.prefix}-reports"
  # Only the report function publishes (no AWS service does): the customer key when there is
  # one, else SNS's AWS-managed key, which any principal of the account may use through SNS.
  kms_master_key_id = coalesce(local.kms_key_arn, "alias/aws/sns")
}

data "aws_iam_policy_document" "reports_topic" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish", "sns:Subscribe"]
    resources = [aws_sns_topic.reports.arn]

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
}

resource "aws_sns_topic_policy" "reports" {
  arn    = aws_sns_topic.reports.arn
  policy = data.aws_iam_policy_document.reports_topic.json
}

resource "aws_sns_topic_subscription" "report_email" {
  count = var.report_email == null ? 0 : 1

  topic_arn = aws_sns_topic.reports.arn
  protocol  = "email"
  endpoint  = var.report_email
}

# Every day at report.schedule_hour_utc:schedule_minute UTC, for the day report.days_back before.
# The schedule's own time goes in the event (a context attribute), so a retry, however late,
# reports the same day; the report is idempotent, so retrying is safe.
resource "aws_scheduler_schedule" "report" {
  #checkov:skip=CKV_AWS_297:The schedule's input is the scheduled time and a day count; nothing for a customer key to protect
  name                         = "${local.prefix}-report"
  description                  = "Sluice ${var.environment}: the daily report of the day before"
  schedule_expression          = local.report_schedule
  schedule_expression_timezone = "UTC"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_alias.this["report"].arn
    role_arn = aws_iam_role.scheduler.arn
    input = jsonencode({
      scheduled_time = "<aws.scheduler.scheduled-time>"
      days_back      = local.report.days_back
    })

    retry_policy {
      maximum_event_age_in_seconds = 4 * 3600
      maximum_retry_attempts       = 3
    }
  }
}

# delivery/report.py: what landed (the forwarder's index, a Query an hour), the ledger (the day's
# windows, file owners, redrive's log), the day's staged windows, Firehose's error output, reason
# files, MinIO's manifests through its secret, the DLQs' depths, CloudWatch's alarms and metrics,
# and its own reports and topic.
data "aws_iam_policy_document" "report" {
  statement {
    sid       = "LandedFilesByHour"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.this["idempotency"].arn}/index/${local.idempotency_landed_index}"]
  }

  statement {
    sid       = "LedgerReads"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem"]
    resources = [aws_dynamodb_table.this["ledger"].arn]
  }

  statement {
    sid       = "ListTheDay"
    actions   = ["s3:ListBucket"]
    resources = [local.staging_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.report_listed_prefixes
    }
  }

  statement {
    sid     = "ReadReasonsErrorsAndReports"
    actions = ["s3:GetObject"]
    resources = [
      "${local.staging_arn}/quarantine/reasons/*",
      "${local.staging_arn}/errors/processing-failed/*",
      "${local.staging_arn}/${local.reports_prefix}*",
    ]
  }

  statement {
    sid       = "WriteReports"
    actions   = ["s3:PutObject"]
    resources = ["${local.staging_arn}/${local.reports_prefix}*"]
  }

  statement {
    sid       = "ReadMinioSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.minio.arn]
  }

  statement {
    sid       = "DlqDepths"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.ingest_dlq.arn, aws_sqs_queue.delivery_dlq.arn, aws_sqs_queue.requeue_dlq.arn]
  }

  statement {
    sid       = "PublishReport"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.reports.arn]
  }

  # The deployment's (metric) alarms only: listed by name prefix, their histories asked alarm
  # by alarm. A narrower scope than * hides composite alarms, of which Sluice has none.
  statement {
    sid       = "DeploymentAlarms"
    actions   = ["cloudwatch:DescribeAlarms", "cloudwatch:DescribeAlarmHistory"]
    resources = [local.deployment_alarm_arns]
  }

  statement {
    sid     = "ReadMetrics"
    actions = ["cloudwatch:GetMetricData"]
    # GetMetricData has no resource-level permissions; it only reads.
    resources = ["*"]
  }
}
