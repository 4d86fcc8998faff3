# The daily report (report.tf): its function, schedule, topic, role and reports location.

mock_provider "aws" {
  source = "./tests/mocks"
  # Mocked computed values (ARNs, URLs) are known at plan time, so assertions on them need no
  # apply.
  override_during = plan
}

variables {
  environment = "prod"
  package_dir = "./tests/fixtures/lambda"
}

run "the_report_function_its_schedule_and_topic" {
  command = plan

  assert {
    condition = (
      aws_lambda_function.this["report"].handler == "delivery.report.lambda_handler" &&
      aws_lambda_function.this["report"].timeout == 900 &&
      aws_lambda_function.this["report"].function_name == "sluice-prod-report"
    )
    error_message = "The report function runs delivery.report.lambda_handler with tunables' timeout."
  }

  assert {
    condition = (
      aws_scheduler_schedule.report.schedule_expression == "cron(0 8 * * ? *)" &&
      aws_scheduler_schedule.report.schedule_expression_timezone == "UTC" &&
      aws_scheduler_schedule.report.target[0].arn == aws_lambda_alias.this["report"].arn &&
      jsondecode(aws_scheduler_schedule.report.target[0].input) == {
        scheduled_time = "<aws.scheduler.scheduled-time>"
        days_back      = 1
      }
    )
    error_message = "The report's live alias runs at 08:00 UTC (report.schedule_*) for the day before, with the schedule's own time in its event."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.scheduler.statement : (
      s.actions == toset(["lambda:InvokeFunction"]) && s.resources == toset([aws_lambda_alias.this["report"].arn])
    )])
    error_message = "The scheduler may invoke the report's alias."
  }

  assert {
    condition = (
      aws_lambda_function.this["report"].environment[0].variables["SLUICE_REPORT_TOPIC_ARN"] == aws_sns_topic.reports.arn &&
      aws_lambda_function.this["report"].environment[0].variables["SLUICE_DEPLOYMENT"] == "sluice-prod" &&
      aws_lambda_function.this["report"].environment[0].variables["SLUICE_INGEST_DLQ_URL"] == aws_sqs_queue.ingest_dlq.url &&
      aws_lambda_function.this["report"].environment[0].variables["SLUICE_REQUEUE_DLQ_URL"] == aws_sqs_queue.requeue_dlq.url
    )
    error_message = "The report is bound to its topic, the deployment's name and the DLQs it reads."
  }

  assert {
    condition     = aws_sns_topic.reports.name == "sluice-prod-reports" && aws_sns_topic.reports.kms_master_key_id == "alias/aws/sns"
    error_message = "The reports topic is encrypted: SNS's AWS-managed key without a customer key (only the function publishes)."
  }

  assert {
    condition     = length(aws_sns_topic_subscription.report_email) == 0
    error_message = "No e-mail subscription unless report_email is set."
  }

  assert {
    condition = [for r in aws_s3_bucket_lifecycle_configuration.staging.rule : (
      [for f in r.filter : f.prefix] == ["reports/daily/"] &&
      [for e in r.expiration : e.days] == [400] &&
      [for n in r.noncurrent_version_expiration : n.noncurrent_days] == [1]
    ) if r.id == "expire-daily-reports"] == [true]
    error_message = "Daily reports are kept report.retention_days (400) under reports/daily/ in staging."
  }

  assert {
    condition     = output.reports_location == "s3://${aws_s3_bucket.this["staging"].bucket}/reports/daily/" && output.report_topic_arn == aws_sns_topic.reports.arn
    error_message = "Outputs say where the reports are and which topic mails them."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.this["report-not-running"].metric_name == "ReportRuns" &&
      aws_cloudwatch_metric_alarm.this["report-not-running"].treat_missing_data == "breaching" &&
      aws_cloudwatch_metric_alarm.this["report-not-running"].period == 93600
    )
    error_message = "A report that does not run for 26 hours alarms (missing data breaching)."
  }
}

run "least_privilege_of_the_report_role" {
  command = plan

  assert {
    condition = {
      for s in data.aws_iam_policy_document.report.statement : s.sid => join(" ", sort(tolist(s.actions)))
      } == {
      LandedFilesByHour           = "dynamodb:Query"
      LedgerReads                 = "dynamodb:BatchGetItem dynamodb:GetItem"
      ListTheDay                  = "s3:ListBucket"
      ReadReasonsErrorsAndReports = "s3:GetObject"
      WriteReports                = "s3:PutObject"
      ReadMinioSecret             = "secretsmanager:GetSecretValue"
      DlqDepths                   = "sqs:GetQueueAttributes"
      PublishReport               = "sns:Publish"
      DeploymentAlarms            = "cloudwatch:DescribeAlarmHistory cloudwatch:DescribeAlarms"
      ReadMetrics                 = "cloudwatch:GetMetricData"
    }
    error_message = "The report's role grants only the calls delivery/report.py makes."
  }

  assert {
    condition = alltrue([
      for s in data.aws_iam_policy_document.report.statement : alltrue([for r in s.resources : r != "*"]) if s.sid != "ReadMetrics"
    ])
    error_message = "Only GetMetricData, which has no resource-level permissions, is granted on *."
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.report.statement : s.resources if s.sid == "WriteReports"]) == toset(["${aws_s3_bucket.this["staging"].arn}/reports/daily/*"])
    error_message = "The report writes under reports/daily/ only."
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.report.statement : s.resources if s.sid == "DeploymentAlarms"]) == toset(["arn:aws:cloudwatch:eu-west-2:123456789012:alarm:sluice-prod-*"])
    error_message = "The report reads the deployment's alarms and their history only."
  }
}

run "report_email_subscribed" {
  command = plan

  variables {
    report_email = "platform@example.com"
  }

  assert {
    condition     = aws_sns_topic_subscription.report_email[0].protocol == "email" && aws_sns_topic_subscription.report_email[0].endpoint == "platform@example.com"
    error_message = "report_email subscribes to the reports topic."
  }
}
