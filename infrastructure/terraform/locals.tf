locals {
  # One file of tunables for Python, the local stack and Terraform (DESIGN §3). The `profiles`
  # in it are for the local stack; AWS takes the top-level values.
  tunables = jsondecode(file("${path.module}/../tunables.json"))
  ingest   = local.tunables.ingest
  firehose = local.tunables.firehose
  delivery = local.tunables.delivery
  redrive  = local.tunables.redrive
  report   = local.tunables.report

  region     = coalesce(var.region, local.tunables.region)
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  prefix     = "${var.name_prefix}-${var.environment}"

  package_dir = coalesce(var.package_dir, "${path.module}/../../build/lambda")

  # --- Names (the local stack's StackNames use the same shapes) -----------------------------
  names = {
    landing_bucket    = "${local.prefix}-landing-${local.account_id}"
    staging_bucket    = "${local.prefix}-staging-${local.account_id}"
    athena_bucket     = "${local.prefix}-athena-${local.account_id}"
    ingest_queue      = "${local.prefix}-ingest"
    ingest_dlq        = "${local.prefix}-ingest-dlq"
    delivery_dlq      = "${local.prefix}-delivery-dlq"
    requeue_dlq       = "${local.prefix}-requeue-dlq"
    idempotency_table = "${local.prefix}-idempotency"
    ledger_table      = "${local.prefix}-ledger"
    minio_secret      = "${local.prefix}/minio"
    producers_secret  = "${local.prefix}/intake-producers"
    glue_database     = replace(local.prefix, "-", "_")
  }
  stream_names = [for index in range(local.firehose.stream_count) : "${local.prefix}-${index}"]

  # Table keys and TTL attributes, as transform/idempotency.py and delivery/ledger.py write them.
  idempotency_key           = "id"
  idempotency_ttl_attribute = "expiration"
  # The idempotency table's index of landed files by hour (transform/idempotency.py LANDED_*).
  idempotency_landed_index = "landed-hour"
  idempotency_landed_hour  = "landed_hour"
  ledger_key               = "pk"
  ledger_ttl_attribute     = "expires_at"

  # The ledger's sparse index of windows not yet final (delivery/ledger.py PENDING_*): a window
  # carries `pending` (its state, CLAIMED or PARKED) and `pending_since_ms` (first claimed, epoch
  # ms) only until it is DELIVERED or EMPTY, so the index holds only the windows still to deliver.
  ledger_pending_index = "pending-windows"
  ledger_pending_key   = "pending"
  ledger_pending_since = "pending_since_ms"

  # The tag delivery puts on a staged window once it is DELIVERED (delivery/delivering.py).
  delivered_tag_value = "true"

  # --- Functions ----------------------------------------------------------------------------
  alias_name = "live"

  # tunables.functions, normalised to one object type, with the overrides applied.
  functions = {
    for name, f in local.tunables.functions : name => {
      handler              = f.handler
      memory_mb            = coalesce(try(var.function_overrides[name].memory_mb, null), f.memory_mb)
      timeout_seconds      = coalesce(try(var.function_overrides[name].timeout_seconds, null), f.timeout_seconds)
      ephemeral_storage_mb = coalesce(try(var.function_overrides[name].ephemeral_storage_mb, null), try(f.ephemeral_storage_mb, null), 512)
      # Redrive runs one at a time (variables.tf refuses another value): overlapping runs would
      # read the same DLQ messages and pending windows and invoke delivery twice for each.
      reserved_concurrency = name == "redrive" ? 1 : coalesce(try(var.function_overrides[name].reserved_concurrency, null), -1)
      environment          = tomap(f.environment)
      resource_environment = tolist(f.resource_environment)
    }
  }
  function_names = { for name in keys(local.functions) : name => "${local.prefix}-${name}" }

  # Alias ARNs built from names: the functions' environments and policies name each other
  # (redrive invokes delivery), which resource references inside one for_each would make a cycle.
  alias_arns = {
    for name, function_name in local.function_names :
    name => "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${function_name}:${local.alias_name}"
  }

  # Values of every `resource_environment` variable (infrastructure/environment.py; the local
  # stack's StackResources.function_bindings binds the same names).
  resource_bindings = {
    SLUICE_LANDING_BUCKET    = local.names.landing_bucket
    SLUICE_STAGING_BUCKET    = local.names.staging_bucket
    SLUICE_IDEMPOTENCY_TABLE = local.names.idempotency_table
    SLUICE_FIREHOSE_STREAMS  = join(",", local.stream_names)
    SLUICE_LEDGER_TABLE      = local.names.ledger_table
    SLUICE_MINIO_SECRET      = local.names.minio_secret
    SLUICE_DELIVERY_DLQ_URL  = aws_sqs_queue.delivery_dlq.url
    SLUICE_DELIVERY_FUNCTION = local.alias_arns["delivery"]
    SLUICE_INGEST_QUEUE_URL  = aws_sqs_queue.ingest.url
    SLUICE_PRODUCERS_SECRET  = local.names.producers_secret
    SLUICE_INGEST_DLQ_URL    = aws_sqs_queue.ingest_dlq.url
    SLUICE_REQUEUE_DLQ_URL   = aws_sqs_queue.requeue_dlq.url
    SLUICE_REPORT_TOPIC_ARN  = aws_sns_topic.reports.arn
    SLUICE_DEPLOYMENT        = local.prefix
  }

  optional_environment = {
    for name in keys(local.functions) : name => (
      var.minio_ca_bundle_path != null && contains(local.functions[name].resource_environment, "SLUICE_MINIO_SECRET")
      ? { SLUICE_MINIO_CA_BUNDLE = var.minio_ca_bundle_path }
      : {}
    )
  }

  function_environment = {
    for name, f in local.functions : name => merge(
      f.environment,
      { for variable in f.resource_environment : variable => local.resource_bindings[variable] },
      local.optional_environment[name],
    )
  }

  # --- Encryption ---------------------------------------------------------------------------
  producer_accounts = distinct(flatten([
    for arns in values(var.producers) : [for arn in arns : regex("^arn:[^:]+:iam::([0-9]{12}):", arn)[0]]
  ]))
  cross_account_producers = length([for account in local.producer_accounts : account if account != local.account_id]) > 0
  create_kms_key          = var.create_kms_key || local.cross_account_producers
  kms_key_arn             = local.create_kms_key ? aws_kms_key.this[0].arn : null

  # --- Glue columns from the envelope's Avro schema -----------------------------------------
  # long -> bigint, ["null", T] -> T, enum -> string. A type with no mapping (record, array,
  # map, a union of two non-null types) fails the plan on purpose: the table would lie.
  envelope       = jsondecode(file("${path.module}/../schemas/envelope.avsc"))
  avro_primitive = { string = "string", int = "int", long = "bigint", boolean = "boolean", float = "float", double = "double", bytes = "binary" }
  envelope_columns = [
    for field in local.envelope.fields : {
      name    = field.name
      comment = try(field.doc, null)
      # A union becomes its one non-null member; jsonencode lets both branches share a type.
      avro = jsondecode(can(field.type[0])
        ? jsonencode(one([for member in field.type : member if member != "null"]))
        : jsonencode(field.type)
      )
    }
  ]
  buffers_columns = [
    for column in local.envelope_columns : {
      name    = column.name
      comment = column.comment
      type = try(
        local.avro_primitive[column.avro],
        column.avro.type == "enum" ? "string" : local.avro_primitive[column.avro.type],
      )
    }
  ]

  # Firehose's error output record, one JSON object per line under errors/.
  errors_columns = [
    { name = "attemptsmade", type = "int", comment = "Processor invocations Firehose attempted" },
    { name = "arrivaltimestamp", type = "bigint", comment = "When Firehose received the record, epoch milliseconds" },
    { name = "errorcode", type = "string", comment = "Lambda.ProcessingFailed for a record the processor failed; another code when the whole invocation failed (requeued)" },
    { name = "errormessage", type = "string", comment = "Firehose's description of the error" },
    { name = "attemptendingtimestamp", type = "bigint", comment = "When Firehose stopped trying, epoch milliseconds" },
    { name = "rawdata", type = "string", comment = "The record as the forwarder sent it, base64" },
    { name = "lambdaarn", type = "string", comment = "The processor that was invoked" },
  ]

  log_group_names = { for name, function_name in local.function_names : name => "/aws/lambda/${function_name}" }
}
