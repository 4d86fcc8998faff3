# Redrive runs every `redrive.schedule_minutes` (EventBridge Scheduler invokes its `live` alias),
# one run at a time (reserved concurrency 1, locals.tf) and never retried (here and in its
# asynchronous configuration, lambda.tf).

locals {
  # An invocation not accepted or not begun within one interval is dropped: the next run comes.
  redrive_event_age_seconds = max(60, local.redrive.schedule_minutes * 60)
}

resource "aws_scheduler_schedule" "redrive" {
  #checkov:skip=CKV_AWS_297:The schedule carries no input payload, only the redrive alias ARN and its role; nothing for a customer key to protect
  name                = "${local.prefix}-redrive"
  description         = "Sluice ${var.environment}: drain the delivery DLQ and re-invoke delivery for forgotten windows"
  schedule_expression = "rate(${local.redrive.schedule_minutes} ${local.redrive.schedule_minutes == 1 ? "minute" : "minutes"})"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_alias.this["redrive"].arn
    role_arn = aws_iam_role.scheduler.arn

    # No retries: a run that fails is redone by the next one, one interval later; a retry
    # overlapping it would double the invocations of delivery it makes.
    retry_policy {
      maximum_event_age_in_seconds = local.redrive_event_age_seconds
      maximum_retry_attempts       = 0
    }
  }
}

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${local.prefix}-scheduler"
  description        = "Sluice ${var.environment}: EventBridge Scheduler invokes redrive and the daily report"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeRedrive"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_alias.this["redrive"].arn]
  }

  # The daily report's schedule (report.tf).
  statement {
    sid       = "InvokeReport"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_alias.this["report"].arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-redrive"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
