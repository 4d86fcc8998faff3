# Every alarm the issue lists, with its metric and threshold, all to the SNS topic, each with
# its runbook in docs/runbooks/.

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

run "every_alarm_with_its_threshold" {
  command = plan

  assert {
    condition = {
      for key, a in aws_cloudwatch_metric_alarm.this : key => "${a.namespace} ${a.metric_name} ${coalesce(a.statistic, a.extended_statistic)} ${a.comparison_operator} ${a.threshold}"
      } == {
      "ingest-oldest-message"  = "AWS/SQS ApproximateAgeOfOldestMessage Maximum GreaterThanThreshold 3600"
      "ingest-depth"           = "AWS/SQS ApproximateNumberOfMessagesVisible Maximum GreaterThanThreshold 10000"
      "ingest-dlq-not-empty"   = "AWS/SQS ApproximateNumberOfMessagesVisible Maximum GreaterThanThreshold 0"
      "delivery-dlq-not-empty" = "AWS/SQS ApproximateNumberOfMessagesVisible Maximum GreaterThanThreshold 0"
      "requeue-dlq-not-empty"  = "AWS/SQS ApproximateNumberOfMessagesVisible Maximum GreaterThanThreshold 0"

      "forwarder-errors"    = "AWS/Lambda Errors Sum GreaterThanThreshold 0"
      "forwarder-throttles" = "AWS/Lambda Throttles Sum GreaterThanThreshold 0"
      "processor-errors"    = "AWS/Lambda Errors Sum GreaterThanThreshold 0"
      "processor-throttles" = "AWS/Lambda Throttles Sum GreaterThanThreshold 0"
      "requeue-errors"      = "AWS/Lambda Errors Sum GreaterThanThreshold 0"
      "requeue-throttles"   = "AWS/Lambda Throttles Sum GreaterThanThreshold 0"
      "delivery-errors"     = "AWS/Lambda Errors Sum GreaterThanThreshold 0"
      "delivery-throttles"  = "AWS/Lambda Throttles Sum GreaterThanThreshold 0"
      "redrive-errors"      = "AWS/Lambda Errors Sum GreaterThanThreshold 0"
      "redrive-throttles"   = "AWS/Lambda Throttles Sum GreaterThanThreshold 0"
      "intake-errors"       = "AWS/Lambda Errors Sum GreaterThanThreshold 0"
      "intake-throttles"    = "AWS/Lambda Throttles Sum GreaterThanThreshold 0"
      "report-errors"       = "AWS/Lambda Errors Sum GreaterThanThreshold 0"
      "report-throttles"    = "AWS/Lambda Throttles Sum GreaterThanThreshold 0"
      "intake-5xx"          = "AWS/ApiGateway 5xx Sum GreaterThanThreshold 0"

      "sluice-prod-0-data-freshness"      = "AWS/Firehose DeliveryToS3.DataFreshness Maximum GreaterThanThreshold 300"
      "sluice-prod-0-throttled-records"   = "AWS/Firehose ThrottledRecords Sum GreaterThanThreshold 0"
      "sluice-prod-0-processing-failures" = "AWS/Firehose ExecuteProcessing.Success Minimum LessThanThreshold 1"
      "sluice-prod-1-data-freshness"      = "AWS/Firehose DeliveryToS3.DataFreshness Maximum GreaterThanThreshold 300"
      "sluice-prod-1-throttled-records"   = "AWS/Firehose ThrottledRecords Sum GreaterThanThreshold 0"
      "sluice-prod-1-processing-failures" = "AWS/Firehose ExecuteProcessing.Success Minimum LessThanThreshold 1"

      "delivery-latency-p99"      = "Sluice EndToEndLatency p99 GreaterThanThreshold 180000"
      "oldest-undelivered-window" = "Sluice OldestUndeliveredWindowAge Maximum GreaterThanThreshold 86400"
      "windows-parked"            = "Sluice WindowsParked Sum GreaterThanThreshold 0"
      "minio-unwritable"          = "Sluice MinioHealthy Minimum LessThanThreshold 1"
      "redrive-not-running"       = "Sluice RedriveRuns Sum LessThanThreshold 1"
      "reconcile-skipped"         = "Sluice ReconcileSkipped Maximum GreaterThanOrEqualToThreshold 1"
      "reconcile-not-running"     = "Sluice ReconcileRuns Sum LessThanThreshold 1"
      "files-excluded"            = "Sluice FilesExcluded Sum GreaterThanThreshold 0"
      "newer-envelopes"           = "Sluice NewerEnvelopes Sum GreaterThanThreshold 0"
      "requeue-exhausted"         = "Sluice RequeueExhausted Sum GreaterThanThreshold 0"
      "versions-gone"             = "Sluice VersionsGone Sum GreaterThanThreshold 0"
      "files-too-large"           = "Sluice FilesTooLarge Sum GreaterThanThreshold 0"
      "records-quarantined"       = "Sluice RecordsFailed Sum GreaterThanThreshold 0"
      "files-missing"             = "Sluice FilesMissing Maximum GreaterThanThreshold 0"
      "inventory-check-late"      = "Sluice InventoryCheckLag Maximum GreaterThanThreshold 172800"
      "files-unannounced"         = "Sluice FilesUnannounced Sum GreaterThanThreshold 0"
      "report-not-running"        = "Sluice ReportRuns Sum LessThanThreshold 1"
    }
    error_message = "Each alarm must watch its metric with its statistic, comparison and threshold."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.this["ingest-oldest-message"].dimensions == tomap({ QueueName = "sluice-prod-ingest" }) &&
      aws_cloudwatch_metric_alarm.this["delivery-dlq-not-empty"].dimensions == tomap({ QueueName = "sluice-prod-delivery-dlq" }) &&
      aws_cloudwatch_metric_alarm.this["delivery-errors"].dimensions == tomap({ FunctionName = "sluice-prod-delivery" }) &&
      aws_cloudwatch_metric_alarm.this["sluice-prod-1-data-freshness"].dimensions == tomap({ DeliveryStreamName = "sluice-prod-1" }) &&
      aws_cloudwatch_metric_alarm.this["delivery-latency-p99"].dimensions == tomap({ service = "delivery" }) &&
      aws_cloudwatch_metric_alarm.this["oldest-undelivered-window"].dimensions == tomap({ service = "redrive" }) &&
      aws_cloudwatch_metric_alarm.this["requeue-exhausted"].dimensions == tomap({ service = "requeue" }) &&
      aws_cloudwatch_metric_alarm.this["files-missing"].dimensions == tomap({ service = "redrive" }) &&
      alltrue([for key in ["minio-unwritable", "redrive-not-running", "reconcile-skipped", "reconcile-not-running", "inventory-check-late", "files-unannounced"] :
      aws_cloudwatch_metric_alarm.this[key].dimensions == tomap({ service = "redrive" })])
    )
    error_message = "Alarms watch the right queue, function, stream or Powertools service."
  }

  assert {
    condition     = aws_cloudwatch_metric_alarm.this["delivery-latency-p99"].statistic == null && aws_cloudwatch_metric_alarm.this["ingest-depth"].evaluation_periods == 3
    error_message = "Percentiles use extended_statistic; the depth alarm waits three periods."
  }

  assert {
    condition = {
      for key, a in aws_cloudwatch_metric_alarm.this : key => "${a.period} x ${a.evaluation_periods}, ${a.datapoints_to_alarm} to alarm" if a.period != 300
      } == {
      "files-missing"         = "3600 x 1, 1 to alarm"
      "reconcile-skipped"     = "3600 x 1, 1 to alarm"
      "redrive-not-running"   = "900 x 1, 1 to alarm"
      "reconcile-not-running" = "7200 x 1, 1 to alarm"
      "inventory-check-late"  = "3600 x 1, 1 to alarm"
      "files-unannounced"     = "3600 x 1, 1 to alarm"
      "report-not-running"    = "93600 x 1, 1 to alarm"
    }
    error_message = "Hourly metrics and the inventory check's are watched over the hour, RedriveRuns over 15 minutes, ReconcileRuns over 2 hours; the others at 5 minutes."
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.this["minio-unwritable"].period == 300 &&
      aws_cloudwatch_metric_alarm.this["minio-unwritable"].evaluation_periods == 3 &&
      aws_cloudwatch_metric_alarm.this["minio-unwritable"].datapoints_to_alarm == 3
    )
    error_message = "MinIO alarms after three consecutive 5-minute periods without a healthy probe."
  }

  # A redrive run that raises or times out publishes nothing: alarms on what it must publish on
  # every run (and on the hourly reconcile's runs) must go red on silence, the rest stay quiet.
  assert {
    condition = toset([for key, a in aws_cloudwatch_metric_alarm.this : key if a.treat_missing_data == "breaching"]) == toset([
      "oldest-undelivered-window", "minio-unwritable", "redrive-not-running", "reconcile-not-running", "inventory-check-late",
      "report-not-running",
    ])
    error_message = "Missing data breaches exactly for the metrics that must keep coming."
  }

  assert {
    condition = alltrue(concat(
      [for key, a in aws_cloudwatch_metric_alarm.this : a.treat_missing_data == "notBreaching" if !contains(["oldest-undelivered-window", "minio-unwritable", "redrive-not-running", "reconcile-not-running", "inventory-check-late", "report-not-running"], key)],
      [for a in aws_cloudwatch_metric_alarm.firehose_bytes_quota : a.treat_missing_data == "notBreaching"],
    ))
    error_message = "Alarms on metrics published only when there is something to say treat missing data as not breaching."
  }

  assert {
    condition = alltrue([for a in concat(values(aws_cloudwatch_metric_alarm.this), values(aws_cloudwatch_metric_alarm.firehose_bytes_quota)) :
    a.alarm_actions == toset([aws_sns_topic.alarms.arn])])
    error_message = "Every alarm notifies the alarm topic."
  }

  assert {
    condition = alltrue([for stream in ["sluice-prod-0", "sluice-prod-1"] : (
      aws_cloudwatch_metric_alarm.firehose_bytes_quota[stream].threshold == 80 &&
      aws_cloudwatch_metric_alarm.firehose_bytes_quota[stream].comparison_operator == "GreaterThanThreshold" &&
      toset([for q in aws_cloudwatch_metric_alarm.firehose_bytes_quota[stream].metric_query : q.metric[0].metric_name if length(q.metric) > 0]) == toset(["IncomingBytes", "BytesPerSecondLimit"])
    )])
    error_message = "Each stream alarms when incoming bytes pass 80% of its BytesPerSecondLimit."
  }

  assert {
    condition     = length(aws_sns_topic_subscription.email) == 0
    error_message = "No e-mail subscription unless alarm_email is set."
  }

  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets) == 11
    error_message = "The dashboard shows the pipeline."
  }
}

run "alarm_email_subscribed" {
  command = plan

  variables {
    alarm_email = "oncall@example.com"
  }

  assert {
    condition     = aws_sns_topic_subscription.email[0].protocol == "email" && aws_sns_topic_subscription.email[0].endpoint == "oncall@example.com"
    error_message = "alarm_email subscribes to the alarm topic."
  }
}

run "thresholds_follow_variables" {
  command = plan

  variables {
    alarm_latency_p99_seconds        = 120
    alarm_undelivered_window_seconds = 7200
    alarm_firehose_quota_percent     = 60
  }

  assert {
    condition = (
      aws_cloudwatch_metric_alarm.this["delivery-latency-p99"].threshold == 120000 &&
      aws_cloudwatch_metric_alarm.this["oldest-undelivered-window"].threshold == 7200 &&
      aws_cloudwatch_metric_alarm.firehose_bytes_quota["sluice-prod-0"].threshold == 60
    )
    error_message = "Thresholds come from their variables."
  }
}

# terraform test evaluates path.module as the module under test, infrastructure/terraform (it
# runs from there), so the runbooks are two folders up.
run "every_alarm_has_its_runbook" {
  command = plan

  assert {
    condition = toset(keys(output.alarm_runbooks)) == toset(concat(
      [for a in aws_cloudwatch_metric_alarm.this : a.alarm_name],
      [for a in aws_cloudwatch_metric_alarm.firehose_bytes_quota : a.alarm_name],
    )) && length(output.alarm_runbooks) == length(aws_cloudwatch_metric_alarm.this) + length(aws_cloudwatch_metric_alarm.firehose_bytes_quota)
    error_message = "alarm_runbooks names every alarm, and nothing else."
  }

  assert {
    condition     = alltrue([for file in values(output.alarm_runbooks) : fileexists("${path.module}/../../docs/runbooks/${file}")])
    error_message = "Every alarm's runbook exists in docs/runbooks/: ${join(", ", [for file in distinct(values(output.alarm_runbooks)) : file if !fileexists("${path.module}/../../docs/runbooks/${file}")])}."
  }

  assert {
    condition = toset(values(output.alarm_runbooks)) == toset(concat(
      [for name in ["forwarder", "processor", "requeue", "delivery", "redrive", "intake", "report"] : "${name}-errors.md"],
      [for name in ["forwarder", "processor", "requeue", "delivery", "redrive", "intake", "report"] : "${name}-throttles.md"],
      ["firehose-data-freshness.md", "firehose-throttled-records.md", "firehose-processing-failures.md", "firehose-bytes-quota.md"],
      [for key in [
        "ingest-oldest-message", "ingest-depth", "ingest-dlq-not-empty", "delivery-dlq-not-empty", "requeue-dlq-not-empty",
        "delivery-latency-p99", "oldest-undelivered-window", "windows-parked", "minio-unwritable", "files-excluded",
        "requeue-exhausted", "versions-gone", "files-too-large", "records-quarantined", "files-missing",
        "redrive-not-running", "reconcile-skipped", "reconcile-not-running", "inventory-check-late", "files-unannounced",
        "newer-envelopes", "intake-5xx", "report-not-running",
      ] : "${key}.md"],
    ))
    error_message = "One runbook per alarm kind: per function and kind, per Firehose alarm kind, else per alarm."
  }

  assert {
    condition = alltrue(concat(
      [for a in aws_cloudwatch_metric_alarm.this : endswith(a.alarm_description, ". Runbook: docs/runbooks/${output.alarm_runbooks[a.alarm_name]}")],
      [for a in aws_cloudwatch_metric_alarm.firehose_bytes_quota : endswith(a.alarm_description, ". Runbook: docs/runbooks/firehose-bytes-quota.md")],
    ))
    error_message = "Every alarm's description ends with its runbook's path."
  }

  assert {
    condition = (
      output.alarm_runbooks["sluice-prod-delivery-errors"] == "delivery-errors.md" &&
      output.alarm_runbooks["sluice-prod-sluice-prod-1-throttled-records"] == "firehose-throttled-records.md" &&
      output.alarm_runbooks["sluice-prod-sluice-prod-0-incoming-bytes-near-quota"] == "firehose-bytes-quota.md" &&
      output.alarm_runbooks["sluice-prod-files-missing"] == "files-missing.md" &&
      output.alarm_runbooks["sluice-prod-minio-unwritable"] == "minio-unwritable.md" &&
      output.alarm_runbooks["sluice-prod-redrive-not-running"] == "redrive-not-running.md"
    )
    error_message = "Per-function alarms share a runbook per kind, per-stream alarms one per kind."
  }

  assert {
    condition     = alltrue([for a in concat(values(aws_cloudwatch_metric_alarm.this), values(aws_cloudwatch_metric_alarm.firehose_bytes_quota)) : length(a.alarm_description) <= 1024])
    error_message = "CloudWatch takes alarm descriptions of at most 1024 characters."
  }
}

run "runbooks_at_a_url" {
  command = plan

  variables {
    runbook_base_url = "https://git.example.com/sluice/blob/main/docs/runbooks"
  }

  assert {
    condition = (
      endswith(aws_cloudwatch_metric_alarm.this["windows-parked"].alarm_description, " Runbook: https://git.example.com/sluice/blob/main/docs/runbooks/windows-parked.md") &&
      endswith(aws_cloudwatch_metric_alarm.firehose_bytes_quota["sluice-prod-1"].alarm_description, " Runbook: https://git.example.com/sluice/blob/main/docs/runbooks/firehose-bytes-quota.md")
    )
    error_message = "runbook_base_url prefixes every runbook link."
  }
}

run "runbook_base_url_without_trailing_slash" {
  command = plan

  variables {
    runbook_base_url = "docs/runbooks/"
  }

  expect_failures = [var.runbook_base_url]
}
