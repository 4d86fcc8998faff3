# Pipeline settings (buffers, retention, batch sizes, function handlers, memory, timeouts and
# environment) come from ../tunables.json, which Python and the local stack read too. The
# variables below are what differs between deployments.

variable "environment" {
  description = "Deployment environment; part of every resource name (sluice-<environment>-…)."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be \"dev\" or \"prod\"."
  }
}

variable "name_prefix" {
  description = "First part of every resource name."
  type        = string
  default     = "sluice"

  validation {
    # Bucket names add -landing-<account id> (20 characters) and must stay within 63.
    condition     = can(regex("^[a-z][a-z0-9-]{1,24}$", var.name_prefix))
    error_message = "name_prefix must be 2-25 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region; null takes `region` from tunables.json."
  type        = string
  default     = null

  validation {
    condition     = var.region == null || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like eu-west-2."
  }
}

variable "tags" {
  description = "Tags added to every resource (Project, Environment and ManagedBy are always set)."
  type        = map(string)
  default     = {}
}

variable "package_dir" {
  description = "Directory holding the Lambda packages that `make package` builds: one <function>.zip per function (forwarder, processor, requeue, delivery, redrive). null: build/lambda at the top of the repository."
  type        = string
  default     = null
}

variable "lambda_architecture" {
  description = "Instruction set the packages were built for; must match `make package`."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "function_overrides" {
  description = "Per function (forwarder, processor, requeue, delivery, redrive): memory, timeout and ephemeral storage replacing the values in tunables.json, and reserved concurrency (unset: unreserved; redrive's is always 1)."
  type = map(object({
    memory_mb            = optional(number)
    timeout_seconds      = optional(number)
    ephemeral_storage_mb = optional(number)
    reserved_concurrency = optional(number)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for name in keys(var.function_overrides) : contains(["forwarder", "processor", "requeue", "delivery", "redrive", "report"], name)])
    error_message = "function_overrides keys must be among forwarder, processor, requeue, delivery, redrive, report."
  }

  validation {
    condition = alltrue([for o in values(var.function_overrides) : (
      (o.memory_mb == null || try(o.memory_mb >= 128 && o.memory_mb <= 10240, false)) &&
      (o.timeout_seconds == null || try(o.timeout_seconds >= 1 && o.timeout_seconds <= 900, false)) &&
      (o.ephemeral_storage_mb == null || try(o.ephemeral_storage_mb >= 512 && o.ephemeral_storage_mb <= 10240, false)) &&
      (o.reserved_concurrency == null || try(o.reserved_concurrency >= 0, false))
    )])
    error_message = "Lambda allows memory 128-10240 MB, timeout 1-900 s, ephemeral storage 512-10240 MB; reserved concurrency must be >= 0."
  }

  # One redrive run at a time is what makes its invocations of delivery happen once (locals.tf).
  validation {
    condition     = coalesce(try(var.function_overrides["redrive"].reserved_concurrency, null), 1) == 1
    error_message = "redrive's reserved concurrency is fixed at 1 (one run at a time); leave function_overrides.redrive.reserved_concurrency unset."
  }
}

variable "live_routing" {
  description = "Blue/green per function: the `live` alias points at the version this apply publishes and sends `weight` (0-1) of invocations to the published `version` given here (typically the previous one). Remove the entry to finish the switch."
  type = map(object({
    version = string
    weight  = number
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for name in keys(var.live_routing) : contains(["forwarder", "processor", "requeue", "delivery", "redrive", "report"], name)])
    error_message = "live_routing keys must be among forwarder, processor, requeue, delivery, redrive, report."
  }

  validation {
    condition     = alltrue([for r in values(var.live_routing) : can(regex("^[0-9]+$", r.version)) && r.weight > 0 && r.weight < 1])
    error_message = "live_routing: version must be a published version number and weight strictly between 0 and 1."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' and Firehose's CloudWatch log groups."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, …, 3653)."
  }
}

# --- S3 -------------------------------------------------------------------------------------

variable "landing_archive_mode" {
  description = "What happens to landed files once delivered: deep_archive (kept, moved to Glacier Deep Archive after landing_hot_days) or expire (deleted after landing_expire_days; the MinIO archives are the durable copy). README.md shows the cost of each."
  type        = string
  default     = "deep_archive"

  validation {
    condition     = contains(["deep_archive", "expire"], var.landing_archive_mode)
    error_message = "landing_archive_mode must be deep_archive or expire."
  }
}

variable "landing_hot_days" {
  description = "deep_archive mode: days a landed file stays in S3 Standard before its transition to Deep Archive (delivery reads `ref` bodies from there until then)."
  type        = number
  default     = 7

  validation {
    condition     = var.landing_hot_days >= 1 && floor(var.landing_hot_days) == var.landing_hot_days
    error_message = "landing_hot_days must be a whole number of days, at least 1."
  }
}

variable "landing_expire_days" {
  description = "expire mode: days after which a landed file's current version expires. At least 15, so that the delivery DLQ's 14 days of redrive still find every `ref` body."
  type        = number
  default     = 30

  validation {
    condition     = var.landing_expire_days >= 15 && floor(var.landing_expire_days) == var.landing_expire_days
    error_message = "landing_expire_days must be a whole number of days, at least 15."
  }
}

variable "landing_noncurrent_days" {
  description = "Days a noncurrent (overwritten or deleted) landing version lives: at least 15, so an overwritten version is still readable by the forwarder and delivery (DESIGN §4)."
  type        = number
  default     = 15

  validation {
    condition     = var.landing_noncurrent_days >= 15 && floor(var.landing_noncurrent_days) == var.landing_noncurrent_days
    error_message = "landing_noncurrent_days must be a whole number of days, at least 15."
  }
}

variable "transition_default_minimum_object_size" {
  description = "Lifecycle minimum object size. Since September 2024 S3 skips objects under 128 KB by default (all_storage_classes_128K); varies_by_storage_class lets small files transition too."
  type        = string
  default     = "varies_by_storage_class"

  validation {
    condition     = contains(["varies_by_storage_class", "all_storage_classes_128K"], var.transition_default_minimum_object_size)
    error_message = "transition_default_minimum_object_size must be varies_by_storage_class or all_storage_classes_128K."
  }
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which incomplete multipart uploads are aborted in every bucket."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_multipart_days >= 1 && floor(var.abort_incomplete_multipart_days) == var.abort_incomplete_multipart_days
    error_message = "abort_incomplete_multipart_days must be a whole number, at least 1."
  }
}

variable "producers" {
  description = "Third parties allowed to write to the landing bucket: name => IAM principal ARNs (roles, users or account roots) that may PUT under <name>/ only. Principals of other accounts also need the customer KMS key, which is then created."
  type        = map(list(string))
  default     = {}
  nullable    = false

  validation {
    condition     = alltrue([for name in keys(var.producers) : can(regex("^[a-z0-9][a-z0-9._-]{0,62}$", name))])
    error_message = "producer names are key prefixes: lower-case letters, digits, '.', '_' and '-', at most 63 characters."
  }

  validation {
    condition     = alltrue(flatten([for arns in values(var.producers) : [for arn in arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(root|role/.+|user/.+)$", arn))]]))
    error_message = "producer principals must be IAM role, user or account-root ARNs."
  }

  validation {
    condition     = alltrue([for arns in values(var.producers) : length(arns) > 0])
    error_message = "every producer needs at least one principal ARN."
  }
}

variable "access_log_bucket" {
  description = "Existing bucket (the account's central log bucket) that receives the S3 server access logs of every Sluice bucket, under <bucket>/: who wrote and read which object, producers of other accounts included. S3 delivers access logs only to a bucket encrypted with SSE-S3, which is why Sluice does not create one. null: no access logs (then enable CloudTrail S3 data events)."
  type        = string
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be a bucket name (3-63 lowercase letters, digits, dots, hyphens)."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete non-empty buckets (dev only: the staging bucket holds undelivered windows)."
  type        = bool
  default     = false
}

# --- Encryption -----------------------------------------------------------------------------

variable "create_kms_key" {
  description = "Create a customer-managed KMS key for buckets, queues, tables, streams, logs, the secret and the alarm topic. Also created whenever a producer principal belongs to another account. Without it: SSE-KMS with the AWS-managed aws/s3 key, SQS-managed SSE (S3 cannot publish to a queue under aws/sqs), and AWS-owned keys elsewhere."
  type        = bool
  default     = false
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of the customer key takes effect."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be 7-30."
  }
}

# --- Data stores ----------------------------------------------------------------------------

variable "deletion_protection" {
  description = "Deletion protection on the idempotency and ledger tables."
  type        = bool
  default     = true
}

variable "secret_recovery_window_days" {
  description = "Days a deleted MinIO secret can be restored (0 deletes at once: dev only)."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or 7-30."
  }
}

variable "minio_ca_bundle_path" {
  description = "Optional path, inside the delivery and redrive packages, of a PEM bundle MinIO's TLS certificate must chain to (SLUICE_MINIO_CA_BUNDLE); null uses the system trust store."
  type        = string
  default     = null
}

# --- Network --------------------------------------------------------------------------------

variable "vpc" {
  description = "Run the functions in a VPC (to reach an on-premise MinIO over VPN or Direct Connect). null: no VPC. With create_endpoints the S3 and DynamoDB gateway endpoints and the Secrets Manager, SQS, Firehose, Lambda and X-Ray interface endpoints are created; without, the subnets need a NAT route to AWS APIs."
  type = object({
    vpc_id            = string
    subnet_ids        = list(string)
    route_table_ids   = optional(list(string), [])
    create_endpoints  = optional(bool, true)
    minio_cidr_blocks = list(string)
    minio_port        = optional(number, 443)
  })
  default = null

  validation {
    condition     = var.vpc == null || try(length(var.vpc.subnet_ids) >= 2, false)
    error_message = "vpc.subnet_ids needs at least two subnets (two availability zones)."
  }

  validation {
    condition     = var.vpc == null || try(!var.vpc.create_endpoints || length(var.vpc.route_table_ids) > 0, false)
    error_message = "vpc.route_table_ids is needed for the S3 and DynamoDB gateway endpoints."
  }

  validation {
    condition     = var.vpc == null || try(alltrue([for c in var.vpc.minio_cidr_blocks : can(cidrhost(c, 0))]) && length(var.vpc.minio_cidr_blocks) > 0, false)
    error_message = "vpc.minio_cidr_blocks must be one or more CIDR blocks where MinIO answers."
  }

  validation {
    condition     = var.vpc == null || try(var.vpc.minio_port >= 1 && var.vpc.minio_port <= 65535, false)
    error_message = "vpc.minio_port must be a TCP port."
  }
}

# --- Analytics ------------------------------------------------------------------------------

variable "athena_bytes_scanned_cutoff" {
  description = "Athena workgroup limit: a query scanning more bytes is cancelled."
  type        = number
  default     = 10737418240

  validation {
    condition     = var.athena_bytes_scanned_cutoff >= 10485760
    error_message = "Athena's minimum bytes-scanned cutoff is 10 MB (10485760)."
  }
}

variable "athena_results_retention_days" {
  description = "Days Athena query results are kept."
  type        = number
  default     = 30

  validation {
    condition     = var.athena_results_retention_days >= 1
    error_message = "athena_results_retention_days must be at least 1."
  }
}

variable "partition_projection_start" {
  description = "First dt (yyyy-MM-dd) Athena's partition projection considers for staged windows."
  type        = string
  default     = "2025-01-01"

  validation {
    condition     = can(formatdate("YYYY-MM-DD", "${var.partition_projection_start}T00:00:00Z"))
    error_message = "partition_projection_start must be a date like 2025-01-01."
  }
}

# --- Alarms ---------------------------------------------------------------------------------

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (the subscription must be confirmed); null: no subscription."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an e-mail address."
  }
}

variable "report_email" {
  description = "E-mail address subscribed to the daily report's topic (the verdict as the subject, the text report as the body; the subscription must be confirmed); null: no subscription."
  type        = string
  default     = null

  validation {
    condition     = var.report_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.report_email))
    error_message = "report_email must be an e-mail address."
  }
}

variable "alarm_ingest_oldest_message_seconds" {
  description = "Alarm when the oldest ingest message is older than this (seed NFR-04: one hour)."
  type        = number
  default     = 3600

  validation {
    condition     = var.alarm_ingest_oldest_message_seconds >= 60
    error_message = "alarm_ingest_oldest_message_seconds must be at least 60."
  }
}

variable "alarm_ingest_depth" {
  description = "Alarm when more ingest messages than this wait, for three 5-minute periods (100 files/s bursts drain well within that)."
  type        = number
  default     = 10000

  validation {
    condition     = var.alarm_ingest_depth >= 1
    error_message = "alarm_ingest_depth must be at least 1."
  }
}

variable "alarm_firehose_freshness_seconds" {
  description = "Alarm when a stream's oldest undelivered record is older than this (buffers add 70 s)."
  type        = number
  default     = 300

  validation {
    condition     = var.alarm_firehose_freshness_seconds >= 60
    error_message = "alarm_firehose_freshness_seconds must be at least 60."
  }
}

variable "alarm_firehose_quota_percent" {
  description = "Alarm when a stream's incoming bytes per second exceed this share of its BytesPerSecondLimit quota."
  type        = number
  default     = 80

  validation {
    condition     = var.alarm_firehose_quota_percent > 0 && var.alarm_firehose_quota_percent <= 100
    error_message = "alarm_firehose_quota_percent must be in (0, 100]."
  }
}

variable "alarm_latency_p99_seconds" {
  description = "Alarm when the p99 end-to-end latency (S3 arrival to MinIO) exceeds this (seed NFR-02: 3 minutes)."
  type        = number
  default     = 180

  validation {
    condition     = var.alarm_latency_p99_seconds >= 1
    error_message = "alarm_latency_p99_seconds must be at least 1."
  }
}

variable "alarm_undelivered_window_seconds" {
  description = "Alarm when the oldest undelivered staged window is older than this (DESIGN §4: 24 h)."
  type        = number
  default     = 86400

  validation {
    condition     = var.alarm_undelivered_window_seconds >= 600
    error_message = "alarm_undelivered_window_seconds must be at least 600."
  }
}

variable "runbook_base_url" {
  description = "Where the alarms' runbooks are read: each alarm's description ends with `Runbook: <runbook_base_url>/<runbook>.md`. The default is the repository-relative folder; set a URL of the rendered docs/runbooks/ (e.g. https://git.example.com/sluice/blob/main/docs/runbooks) so the link opens from the alarm e-mail."
  type        = string
  default     = "docs/runbooks"
  nullable    = false

  validation {
    condition     = length(var.runbook_base_url) > 0 && !endswith(var.runbook_base_url, "/") && !can(regex("\\s", var.runbook_base_url))
    error_message = "runbook_base_url must be a path or URL without spaces or a trailing slash, e.g. docs/runbooks."
  }
}

variable "intake_throttle" {
  description = "API Gateway's limit on each intake route, for all producers together (requests a second, and the burst above it). Each producer's own limit is intake.producer_requests_per_second in tunables.json."
  type = object({
    rate  = number
    burst = number
  })
  default = { rate = 200, burst = 400 }

  validation {
    condition     = var.intake_throttle.rate > 0 && var.intake_throttle.burst >= var.intake_throttle.rate
    error_message = "intake_throttle.rate must be positive and burst at least rate."
  }
}
