output "landing_bucket" {
  description = "Bucket producers PUT files into, under <producer>/."
  value       = aws_s3_bucket.this["landing"].bucket
}

output "staging_bucket" {
  description = "Bucket Firehose stages windows in (buffers/, errors/), delivery writes the payload tables' rows to (tables/<table>/) and reason files are written to (quarantine/); S3 Inventory writes the landing bucket's reports under inventory/."
  value       = aws_s3_bucket.this["staging"].bucket
}

output "landing_inventory_reports" {
  description = "Where S3 Inventory writes the landing bucket's daily reports of every version (s3://<staging>/inventory/<landing>/landing-versions/), which redrive's inventory check reads."
  value       = "s3://${aws_s3_bucket.this["staging"].bucket}/${local.inventory_prefix}/${aws_s3_bucket.this["landing"].bucket}/${aws_s3_bucket_inventory.landing.name}/"
}

output "athena_results_bucket" {
  description = "Bucket of Athena query results."
  value       = aws_s3_bucket.this["athena"].bucket
}

output "ingest_queue_url" {
  description = "URL of the ingest queue (S3 events of the landing bucket)."
  value       = aws_sqs_queue.ingest.url
}

output "ingest_dlq_url" {
  description = "URL of the ingest dead-letter queue."
  value       = aws_sqs_queue.ingest_dlq.url
}

output "delivery_dlq_url" {
  description = "URL of delivery's on-failure destination, which redrive drains."
  value       = aws_sqs_queue.delivery_dlq.url
}

output "requeue_dlq_url" {
  description = "URL of requeue's on-failure destination."
  value       = aws_sqs_queue.requeue_dlq.url
}

output "idempotency_table" {
  description = "Name of the forwarder's idempotency table."
  value       = aws_dynamodb_table.this["idempotency"].name
}

output "ledger_table" {
  description = "Name of delivery's ledger table."
  value       = aws_dynamodb_table.this["ledger"].name
}

output "firehose_streams" {
  description = "Names of the Firehose streams, in the order SLUICE_FIREHOSE_STREAMS lists them."
  value       = [for name in local.stream_names : aws_kinesis_firehose_delivery_stream.this[name].name]
}

output "function_names" {
  description = "Function name per Sluice function (forwarder, processor, requeue, delivery, redrive)."
  value       = { for name, function in aws_lambda_function.this : name => function.function_name }
}

output "function_alias_arns" {
  description = "ARN of each function's `live` alias, which every trigger invokes."
  value       = { for name, alias in aws_lambda_alias.this : name => alias.arn }
}

output "function_versions" {
  description = "Version each `live` alias points at (for live_routing on the next deployment)."
  value       = { for name, function in aws_lambda_function.this : name => function.version }
}

output "function_environment" {
  description = "Environment of each function as deployed (compared with the local stack's in the tests)."
  value       = local.function_environment
}

output "function_policies" {
  description = "Each function's IAM policy document (JSON), for the least-privilege tests."
  value       = { for name, document in data.aws_iam_policy_document.lambda : name => document.json }
}

output "minio_secret_arn" {
  description = "ARN of the MinIO secret; put its value with `aws secretsmanager put-secret-value`."
  value       = aws_secretsmanager_secret.minio.arn
}

output "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the pipeline."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "glue_database" {
  description = "Glue database holding the buffers and errors tables and one table per payload type."
  value       = aws_glue_catalog_database.this.name
}

output "payload_tables" {
  description = "The payload tables (Glue table names) and, for each, the landing prefix whose files fill it (docs/tables.md)."
  value       = { for name, table in local.payload_tables : aws_glue_catalog_table.this[name].name => table.prefix }
}

output "named_queries" {
  description = "Names of the Athena named queries, operational and per payload table, that `sluice query --env` runs."
  value       = sort([for query in aws_athena_named_query.this : query.name])
}

output "athena_workgroup" {
  description = "Athena workgroup to run the named queries in."
  value       = aws_athena_workgroup.this.name
}

output "kms_key_arn" {
  description = "ARN of the customer-managed key, or null when AWS-managed keys are used."
  value       = local.kms_key_arn
}

output "alarm_runbooks" {
  description = "Runbook of each alarm, by alarm name: a file name under runbook_base_url (docs/runbooks/ in this repository). The alarm's description ends with the same path."
  value = merge(
    { for key, alarm in aws_cloudwatch_metric_alarm.this : alarm.alarm_name => "${local.alarms[key].runbook}.md" },
    { for alarm in aws_cloudwatch_metric_alarm.firehose_bytes_quota : alarm.alarm_name => "${local.quota_alarm.runbook}.md" },
  )
}

output "intake_url" {
  description = "The HTTPS intake's base URL: producers POST to <url>/v1/files/<name> and <url>/v1/events (docs/intake.md)."
  value       = aws_apigatewayv2_stage.intake.invoke_url
}

output "producers_secret" {
  description = "The secret holding the sha256 of each intake producer's keys (`sluice producer add` puts them)."
  value       = aws_secretsmanager_secret.producers.name
}

output "report_topic_arn" {
  description = "SNS topic the daily report publishes to: its verdict as the subject, the text report as the body (docs/report.md)."
  value       = aws_sns_topic.reports.arn
}

output "reports_location" {
  description = "Where the daily reports are kept: <day>.json, .txt and .html, for report.retention_days."
  value       = "s3://${aws_s3_bucket.this["staging"].bucket}/${local.reports_prefix}"
}
