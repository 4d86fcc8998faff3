# Alarms to one SNS topic (optionally mailed), and a dashboard. The functions' own metrics are
# Powertools EMF metrics in the tunables' namespace, dimension `service` = the function's
# POWERTOOLS_SERVICE_NAME.

resource "aws_sns_topic" "alarms" {
  name = "${local.prefix}-alarms"
  # CloudWatch cannot publish to a topic under the AWS-managed aws/sns key, so the topic is
  # encrypted only with the customer key (whose policy admits cloudwatch.amazonaws.com).
  kms_master_key_id = local.kms_key_arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

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
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

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

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  namespace = local.tunables.metrics_namespace
  service   = { for name, f in local.functions : name => f.environment["POWERTOOLS_SERVICE_NAME"] }

  # One entry per alarm: metric, statistic, comparison and threshold, and its runbook
  # (docs/runbooks/<runbook>.md, named at the end of the alarm's description). Period 300 s and
  # one evaluation period unless said otherwise.
  queue_alarms = {
    "ingest-oldest-message" = {
      description = "The oldest ingest message is older than ${var.alarm_ingest_oldest_message_seconds} s: the forwarder is not keeping up or is failing."
      runbook     = "ingest-oldest-message"
      namespace   = "AWS/SQS"
      metric      = "ApproximateAgeOfOldestMessage"
      dimensions  = { QueueName = local.names.ingest_queue }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = var.alarm_ingest_oldest_message_seconds
      periods     = 1
    }
    "ingest-depth" = {
      description = "More than ${var.alarm_ingest_depth} ingest messages have waited for 15 minutes."
      runbook     = "ingest-depth"
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = local.names.ingest_queue }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = var.alarm_ingest_depth
      periods     = 3
    }
    "ingest-dlq-not-empty" = {
      description = "S3 events failed ${local.ingest.max_receive_count} receives and rest in the ingest DLQ (kept ${local.ingest.dlq_retention_seconds / 86400} days): `sluice redrive --ingest` moves them back."
      runbook     = "ingest-dlq-not-empty"
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = local.names.ingest_dlq }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "delivery-dlq-not-empty" = {
      description = "Windows failed delivery after Lambda's retries; redrive replays them once MinIO answers."
      runbook     = "delivery-dlq-not-empty"
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = local.names.delivery_dlq }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "intake-5xx" = {
      description = "The HTTPS intake answered producers with server errors (the intake could not land, or API Gateway could not reach it)."
      runbook     = "intake-5xx"
      namespace   = "AWS/ApiGateway"
      metric      = "5xx"
      dimensions  = { ApiId = aws_apigatewayv2_api.intake.id, Stage = "$default" }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "requeue-dlq-not-empty" = {
      description = "errors/ objects whose records could not be put back into Firehose after Lambda's retries."
      runbook     = "requeue-dlq-not-empty"
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = local.names.requeue_dlq }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
  }

  lambda_alarms = merge([
    for name, function_name in local.function_names : {
      "${name}-errors" = {
        description = "${function_name} raised errors."
        runbook     = "${name}-errors"
        namespace   = "AWS/Lambda"
        metric      = "Errors"
        dimensions  = { FunctionName = function_name }
        statistic   = "Sum"
        comparison  = "GreaterThanThreshold"
        threshold   = 0
        periods     = 1
      }
      "${name}-throttles" = {
        description = "${function_name} was throttled."
        runbook     = "${name}-throttles"
        namespace   = "AWS/Lambda"
        metric      = "Throttles"
        dimensions  = { FunctionName = function_name }
        statistic   = "Sum"
        comparison  = "GreaterThanThreshold"
        threshold   = 0
        periods     = 1
      }
    }
  ]...)

  firehose_alarms = merge([
    for stream in local.stream_names : {
      "${stream}-data-freshness" = {
        description = "Records in ${stream} waited more than ${var.alarm_firehose_freshness_seconds} s to reach the staging bucket."
        runbook     = "firehose-data-freshness"
        namespace   = "AWS/Firehose"
        metric      = "DeliveryToS3.DataFreshness"
        dimensions  = { DeliveryStreamName = stream }
        statistic   = "Maximum"
        comparison  = "GreaterThanThreshold"
        threshold   = var.alarm_firehose_freshness_seconds
        periods     = 1
      }
      "${stream}-throttled-records" = {
        description = "${stream} throttled records (quota): the forwarder retries them, latency grows."
        runbook     = "firehose-throttled-records"
        namespace   = "AWS/Firehose"
        metric      = "ThrottledRecords"
        dimensions  = { DeliveryStreamName = stream }
        statistic   = "Sum"
        comparison  = "GreaterThanThreshold"
        threshold   = 0
        periods     = 1
      }
      "${stream}-processing-failures" = {
        description = "Processor invocations of ${stream} failed as a whole: their batches go to errors/ and requeue."
        runbook     = "firehose-processing-failures"
        namespace   = "AWS/Firehose"
        metric      = "ExecuteProcessing.Success"
        dimensions  = { DeliveryStreamName = stream }
        statistic   = "Minimum"
        comparison  = "LessThanThreshold"
        threshold   = 1
        periods     = 1
      }
    }
  ]...)

  pipeline_alarms = {
    "delivery-latency-p99" = {
      description = "p99 end-to-end latency (S3 arrival to MinIO) above ${var.alarm_latency_p99_seconds} s."
      runbook     = "delivery-latency-p99"
      namespace   = local.namespace
      metric      = "EndToEndLatency"
      dimensions  = { service = local.service["delivery"] }
      statistic   = "p99"
      comparison  = "GreaterThanThreshold"
      threshold   = var.alarm_latency_p99_seconds * 1000 # the metric is in milliseconds
      periods     = 1
    }
    "oldest-undelivered-window" = {
      description = "A staged window has waited more than ${var.alarm_undelivered_window_seconds} s for delivery (its refs leave the hot tier on day ${var.landing_hot_days})."
      runbook     = "oldest-undelivered-window"
      namespace   = local.namespace
      metric      = "OldestUndeliveredWindowAge"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = var.alarm_undelivered_window_seconds
      periods     = 1
    }
    "windows-parked" = {
      description = "Windows redriven ${local.redrive.max_redrives} times were PARKED: `sluice redrive --window` releases one once its cause is fixed."
      runbook     = "windows-parked"
      namespace   = local.namespace
      metric      = "WindowsParked"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "minio-unwritable" = {
      description = "For 15 minutes redrive's MinIO probe (write, read back and delete an object) failed, or no run reported it: MinIO cannot take writes or cannot be reached; windows wait in staging and the delivery DLQ."
      runbook     = "minio-unwritable"
      namespace   = local.namespace
      metric      = "MinioHealthy"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Minimum"
      comparison  = "LessThanThreshold"
      threshold   = 1
      periods     = 3
    }
    "redrive-not-running" = {
      description = "No redrive run began in 15 minutes (each publishes RedriveRuns first): the delivery DLQ is not drained, stuck windows are not re-invoked, and redrive's other metrics stop."
      runbook     = "redrive-not-running"
      namespace   = local.namespace
      metric      = "RedriveRuns"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Sum"
      comparison  = "LessThanThreshold"
      threshold   = 1
      periods     = 1
    }
    "reconcile-skipped" = {
      description = "An hourly reconcile was skipped or left incomplete (more landed versions than redrive.reconcile_max_versions = ${local.redrive.reconcile_max_versions}): files missing in that hour go unreported until it is reconciled by hand."
      runbook     = "reconcile-skipped"
      namespace   = local.namespace
      metric      = "ReconcileSkipped"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Maximum"
      comparison  = "GreaterThanOrEqualToThreshold"
      threshold   = 1
      periods     = 1
    }
    "reconcile-not-running" = {
      description = "No hourly reconcile completed in 2 hours (redrive not running, failing or timing out, MinIO unwritable, or every hour skipped): lost files go unnoticed."
      runbook     = "reconcile-not-running"
      namespace   = local.namespace
      metric      = "ReconcileRuns"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Sum"
      comparison  = "LessThanThreshold"
      threshold   = 1
      periods     = 1
    }
    "files-excluded" = {
      description = "Delivery excluded files from archives (version gone, checksum mismatch, unparseable): reasons in the manifests."
      runbook     = "files-excluded"
      namespace   = local.namespace
      metric      = "FilesExcluded"
      dimensions  = { service = local.service["delivery"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "newer-envelopes" = {
      description = "Staged windows hold envelopes of a newer schema_version than delivery reads (the forwarder deployed ahead of it): they wait, retried, until delivery is deployed."
      runbook     = "newer-envelopes"
      namespace   = local.namespace
      metric      = "NewerEnvelopes"
      dimensions  = { service = local.service["delivery"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "requeue-exhausted" = {
      description = "Records of failed processor invocations were requeued ${local.tunables.requeue.max_attempts} times and stay in errors/."
      runbook     = "requeue-exhausted"
      namespace   = local.namespace
      metric      = "RequeueExhausted"
      dimensions  = { service = local.service["requeue"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "versions-gone" = {
      description = "Landed versions were deleted for good before the forwarder read them (quarantine/reasons/)."
      runbook     = "versions-gone"
      namespace   = local.namespace
      metric      = "VersionsGone"
      dimensions  = { service = local.service["forwarder"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "files-too-large" = {
      description = "Landed files over max_file_bytes were quarantined as too-large."
      runbook     = "files-too-large"
      namespace   = local.namespace
      metric      = "FilesTooLarge"
      dimensions  = { service = local.service["forwarder"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "records-quarantined" = {
      description = "The processor failed records (invalid envelope or payload schema): reasons in quarantine/reasons/."
      runbook     = "records-quarantined"
      namespace   = local.namespace
      metric      = "RecordsFailed"
      dimensions  = { service = local.service["processor"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    "files-missing" = {
      description = "A scheduled reconcile (run by redrive once an hour over a recent hour) found landed files in no archive, no quarantine and no exclusion: lost S3 events or expired retries."
      runbook     = "files-missing"
      namespace   = local.namespace
      metric      = "FilesMissing"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
    # S3 Inventory reports the landing bucket once a day (inventory.tf), so the check's lag runs
    # from about 1 h to 25 h; 48 h is a report missed, or a check that cannot keep up. With no
    # report yet the lag counts from the check's first run, and S3 writes the first within 48 h.
    "inventory-check-late" = {
      description = "Redrive's inventory check has covered nothing landed in the last 48 h (no S3 Inventory report, one it cannot read, or it stopped reporting): versions whose S3 event was lost are not found and announced again."
      runbook     = "inventory-check-late"
      namespace   = local.namespace
      metric      = "InventoryCheckLag"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Maximum"
      comparison  = "GreaterThanThreshold"
      threshold   = 48 * 3600
      periods     = 1
    }
    # The report runs once a day (report.tf) and publishes ReportRuns once it has stored and
    # mailed the day: a day and two hours without one is a report missed, not a late one.
    "report-not-running" = {
      description = "No daily report was made in 26 hours (its schedule disabled, the function failing, throttled or timing out): nobody is told what came in, what went out and what is wrong."
      runbook     = "report-not-running"
      namespace   = local.namespace
      metric      = "ReportRuns"
      dimensions  = { service = local.service["report"] }
      statistic   = "Sum"
      comparison  = "LessThanThreshold"
      threshold   = 1
      periods     = 1
    }
    "files-unannounced" = {
      description = "The daily inventory check found landed versions the forwarder never saw (their S3 event was lost) and announced them again on the ingest queue."
      runbook     = "files-unannounced"
      namespace   = local.namespace
      metric      = "FilesUnannounced"
      dimensions  = { service = local.service["redrive"] }
      statistic   = "Sum"
      comparison  = "GreaterThanThreshold"
      threshold   = 0
      periods     = 1
    }
  }

  alarms = merge(local.queue_alarms, local.lambda_alarms, local.firehose_alarms, local.pipeline_alarms)

  # Periods other than 300 s: FilesMissing and ReconcileSkipped are published once an hour, so
  # their alarms look at the hour and stay in ALARM until the next reconcile says otherwise.
  # RedriveRuns comes every 5 minutes: 15 minutes without one is three runs missed.
  # ReconcileRuns comes once an hour: 2 hours without one is a reconcile missed, not a late one.
  # InventoryCheckLag comes with every run and grows by the hour: an hour without one is twelve
  # runs that did not check; FilesUnannounced comes only as the check reads a report's files,
  # a few times a day: the alarm stays in ALARM for the hour after it.
  alarm_periods = {
    "files-missing"         = 3600
    "reconcile-skipped"     = 3600
    "redrive-not-running"   = 900
    "reconcile-not-running" = 7200
    "inventory-check-late"  = 3600
    "files-unannounced"     = 3600
    "report-not-running"    = 26 * 3600
  }

  # Metrics that must keep coming: redrive sends RedriveRuns, MinioHealthy and the oldest age as
  # each run begins, ReconcileRuns once an hour, InventoryCheckLag with every run's inventory
  # check; a run that never begins, or dies before that flush, sends nothing, and that silence
  # must page, not read as "fine". The others come only when there is something to say, or only
  # when the reconcile or the inventory check read something (FilesMissing, ReconcileSkipped,
  # FilesUnannounced: sent only for a run that read a report's data file): their silence is
  # covered by these.
  alarms_breaching_when_missing = toset([
    "oldest-undelivered-window",
    "minio-unwritable",
    "redrive-not-running",
    "reconcile-not-running",
    "inventory-check-late",
    "report-not-running",
  ])

  # The per-stream quota alarms (firehose_bytes_quota below) share one runbook.
  quota_alarm = {
    runbook = "firehose-bytes-quota"
  }
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = "${local.prefix}-${each.key}"
  alarm_description   = "${each.value.description} Runbook: ${var.runbook_base_url}/${each.value.runbook}.md"
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = startswith(each.value.statistic, "p") ? null : each.value.statistic
  extended_statistic  = startswith(each.value.statistic, "p") ? each.value.statistic : null
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  period              = lookup(local.alarm_periods, each.key, 300)
  evaluation_periods  = each.value.periods
  datapoints_to_alarm = each.value.periods
  treat_missing_data  = contains(local.alarms_breaching_when_missing, each.key) ? "breaching" : "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Incoming bytes per second against the stream's own BytesPerSecondLimit (1 MiB/s outside
# us-east-1, us-west-2 and eu-west-1: DESIGN §5).
resource "aws_cloudwatch_metric_alarm" "firehose_bytes_quota" {
  for_each = toset(local.stream_names)

  alarm_name          = "${local.prefix}-${each.key}-incoming-bytes-near-quota"
  alarm_description   = "${each.key} receives more than ${var.alarm_firehose_quota_percent}% of its bytes-per-second quota: add a stream (firehose.stream_count) or ask for a higher quota. Runbook: ${var.runbook_base_url}/${local.quota_alarm.runbook}.md"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.alarm_firehose_quota_percent
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "usage"
    expression  = "100 * (bytes / PERIOD(bytes)) / limit"
    label       = "Incoming bytes, % of quota"
    return_data = true
  }

  metric_query {
    id = "bytes"

    metric {
      namespace   = "AWS/Firehose"
      metric_name = "IncomingBytes"
      dimensions  = { DeliveryStreamName = each.key }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id = "limit"

    metric {
      namespace   = "AWS/Firehose"
      metric_name = "BytesPerSecondLimit"
      dimensions  = { DeliveryStreamName = each.key }
      stat        = "Maximum"
      period      = 60
    }
  }
}

# --- Dashboard ------------------------------------------------------------------------------

locals {
  dashboard_widgets = [
    {
      title   = "Ingest queue"
      metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", local.names.ingest_queue], [".", "ApproximateAgeOfOldestMessage", ".", ".", { yAxis = "right" }]]
      stat    = "Maximum"
    },
    {
      title   = "Dead-letter queues"
      metrics = [for queue in [local.names.ingest_dlq, local.names.delivery_dlq, local.names.requeue_dlq] : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue]]
      stat    = "Maximum"
    },
    {
      title   = "Firehose incoming bytes"
      metrics = [for stream in local.stream_names : ["AWS/Firehose", "IncomingBytes", "DeliveryStreamName", stream]]
      stat    = "Sum"
    },
    {
      title   = "Firehose data freshness (s)"
      metrics = [for stream in local.stream_names : ["AWS/Firehose", "DeliveryToS3.DataFreshness", "DeliveryStreamName", stream]]
      stat    = "Maximum"
    },
    {
      title   = "Lambda errors"
      metrics = [for function_name in values(local.function_names) : ["AWS/Lambda", "Errors", "FunctionName", function_name]]
      stat    = "Sum"
    },
    {
      title   = "Lambda duration p99 (ms)"
      metrics = [for function_name in values(local.function_names) : ["AWS/Lambda", "Duration", "FunctionName", function_name]]
      stat    = "p99"
    },
    {
      title   = "End-to-end latency (ms)"
      metrics = [[local.namespace, "EndToEndLatency", "service", local.service["delivery"], { stat = "p50" }], ["...", { stat = "p99" }]]
      stat    = "p99"
    },
    {
      title = "Files"
      metrics = [
        [local.namespace, "FilesForwarded", "service", local.service["forwarder"]],
        [local.namespace, "FilesDelivered", "service", local.service["delivery"]],
        [local.namespace, "FilesExcluded", "service", local.service["delivery"]],
        [local.namespace, "RecordsFailed", "service", local.service["processor"]],
        [local.namespace, "FilesMissing", "service", local.service["redrive"]],
        [local.namespace, "FilesUnannounced", "service", local.service["redrive"]],
      ]
      stat = "Sum"
    },
    {
      title = "Redrive"
      metrics = [
        [local.namespace, "OldestUndeliveredWindowAge", "service", local.service["redrive"], { stat = "Maximum", yAxis = "right" }],
        [local.namespace, "WindowsRedriven", "service", local.service["redrive"]],
        [local.namespace, "WindowsReinvoked", "service", local.service["redrive"]],
        [local.namespace, "WindowsParked", "service", local.service["redrive"]],
      ]
      stat = "Sum"
    },
    {
      title = "Redrive health"
      metrics = [
        [local.namespace, "RedriveRuns", "service", local.service["redrive"]],
        [local.namespace, "ReconcileRuns", "service", local.service["redrive"]],
        [local.namespace, "ReconcileSkipped", "service", local.service["redrive"]],
        [local.namespace, "MinioHealthy", "service", local.service["redrive"], { stat = "Minimum" }],
        [local.namespace, "InventoryCheckLag", "service", local.service["redrive"], { stat = "Maximum", yAxis = "right" }],
      ]
      stat = "Sum"
    },
    {
      title = "HTTPS intake"
      metrics = [
        ["AWS/ApiGateway", "Count", "ApiId", aws_apigatewayv2_api.intake.id, "Stage", "$default"],
        [".", "4xx", ".", ".", ".", "."],
        [".", "5xx", ".", ".", ".", "."],
        [".", "Latency", ".", ".", ".", ".", { stat = "p99", yAxis = "right" }],
      ]
      stat = "Sum"
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = local.prefix
  dashboard_body = jsonencode({
    widgets = [
      for index, widget in local.dashboard_widgets : {
        type   = "metric"
        x      = (index % 3) * 8
        y      = floor(index / 3) * 6
        width  = 8
        height = 6
        properties = {
          title   = widget.title
          metrics = widget.metrics
          stat    = widget.stat
          period  = 60
          region  = local.region
          view    = "timeSeries"
        }
      }
    ]
  })
}
