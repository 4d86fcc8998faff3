# Athena over the staging bucket: staged windows (buffers/), Firehose's error output (errors/)
# and the analysts' payload tables (tables/<table>/, one per payload type, docs/tables.md),
# partitions projected from the key layout, so no crawler and no MSCK REPAIR.

locals {
  staging_location = "s3://${aws_s3_bucket.this["staging"].bucket}"

  json_serde = {
    library = "org.openx.data.jsonserde.JsonSerDe"
    # Firehose can duplicate records and a window may hold a line from a newer schema: skip
    # what does not parse rather than fail the query.
    parameters = { "ignore.malformed.json" = "true" }
  }

  # The payload tables are written by delivery, a whole object at a time, so every line parses.
  # The Hive JSON SerDe: the OpenX one may return non-deterministic rows (Athena's OpenX JSON
  # SerDe page), and Athena's DuckDB engine reads the Hive one too. It parses the timestamp
  # text delivery writes (yyyy-MM-dd HH:mm:ss.SSS, java.sql.Timestamp's) without
  # timestamp.formats, and structs, arrays, maps, booleans and nulls as typed.
  payload_serde = {
    library    = "org.apache.hive.hcatalog.data.JsonSerDe"
    parameters = {}
  }

  # dt and hour of the window that staged the data, projected like Firehose's buffers/ prefix.
  hour_partitions = [
    { name = "dt", type = "string", comment = "Firehose arrival date of the window's oldest record, yyyy-MM-dd (UTC)" },
    { name = "hour", type = "string", comment = "Its hour, HH (UTC)" },
  ]
  hour_projection = {
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "${var.partition_projection_start},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"
    "projection.hour.type"        = "integer"
    "projection.hour.range"       = "0,23"
    "projection.hour.digits"      = "2"
  }

  # One table per payload type, its columns generated from the type's Avro schema by
  # `make tables` (infrastructure/glue_tables.py) into ../schemas/payload_tables.json.
  payload_tables = jsondecode(file("${path.module}/../schemas/payload_tables.json")).tables
  payload_glue_tables = {
    for name, table in local.payload_tables : name => {
      description = table.description
      location    = "${local.staging_location}/${table.location}"
      columns     = table.columns
      partitions  = local.hour_partitions
      projection = merge(local.hour_projection, {
        "storage.location.template" = "${local.staging_location}/${table.location}dt=$${dt}/hour=$${hour}/"
      })
      serde = local.payload_serde
    }
  }

  glue_tables = {
    buffers = {
      description = "Staged windows: one envelope per line (infrastructure/schemas/envelope.avsc). Firehose can duplicate records: count DISTINCT file_id."
      location    = "${local.staging_location}/buffers/"
      columns     = local.buffers_columns
      partitions  = local.hour_partitions
      projection = merge(local.hour_projection, {
        "storage.location.template" = "${local.staging_location}/buffers/dt=$${dt}/hour=$${hour}/"
      })
      serde = local.json_serde
    }
    errors = {
      description = "Firehose's error output: records of failed processor invocations (requeued) and records the processor failed (quarantined, reason in quarantine/reasons/)."
      location    = "${local.staging_location}/errors/"
      columns     = local.errors_columns
      partitions = [
        { name = "error_output_type", type = "string", comment = "Firehose's error output type" },
        { name = "dt", type = "string", comment = "Firehose arrival date, yyyy-MM-dd (UTC)" },
      ]
      projection = {
        "projection.error_output_type.type"   = "enum"
        "projection.error_output_type.values" = "processing-failed"
        "projection.dt.type"                  = "date"
        "projection.dt.format"                = "yyyy-MM-dd"
        "projection.dt.range"                 = "${var.partition_projection_start},NOW"
        "projection.dt.interval"              = "1"
        "projection.dt.interval.unit"         = "DAYS"
        "storage.location.template"           = "${local.staging_location}/errors/$${error_output_type}/dt=$${dt}/"
      }
      serde = local.json_serde
    }
  }

  # Named queries: each operational query in queries/ (keyed by its file name), and each
  # template in queries/per_table/ once per payload table, named <table>_<template>. The first
  # comment line of a file is the query's description.
  per_table_queries = {
    for pair in setproduct(keys(local.payload_tables), fileset("${path.module}/queries/per_table", "*.sql")) :
    "${pair[0]}_${trimsuffix(pair[1], ".sql")}" => { file = "per_table/${pair[1]}", table = pair[0] }
  }
  named_queries = merge(
    { for file in fileset("${path.module}/queries", "*.sql") : file => { name = trimsuffix(file, ".sql"), file = file, table = null } },
    { for name, query in local.per_table_queries : name => merge(query, { name = name }) },
  )
  # Names given twice (an operational query named like <table>_<template>): refused below.
  named_query_clashes = [
    for name, files in { for query in values(local.named_queries) : query.name => query.file... } : name if length(files) > 1
  ]
}

resource "aws_glue_catalog_database" "this" {
  name        = local.names.glue_database
  description = "Sluice ${var.environment}: staged windows, Firehose errors and the payload tables"
}

resource "aws_glue_catalog_table" "this" {
  for_each = merge(local.glue_tables, local.payload_glue_tables)

  name          = each.key
  database_name = aws_glue_catalog_database.this.name
  description   = each.value.description
  table_type    = "EXTERNAL_TABLE"

  parameters = merge(each.value.projection, {
    EXTERNAL             = "TRUE"
    classification       = "json"
    compressionType      = "gzip"
    "projection.enabled" = "true"
  })

  dynamic "partition_keys" {
    for_each = each.value.partitions

    content {
      name    = partition_keys.value.name
      type    = partition_keys.value.type
      comment = partition_keys.value.comment
    }
  }

  storage_descriptor {
    location      = each.value.location
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
    compressed    = true

    ser_de_info {
      serialization_library = each.value.serde.library
      parameters            = each.value.serde.parameters
    }

    dynamic "columns" {
      for_each = each.value.columns

      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }

  lifecycle {
    # `make tables` refuses these names too; this stops a hand-edited payload_tables.json.
    precondition {
      condition     = length(setintersection(keys(local.glue_tables), keys(local.payload_tables))) == 0
      error_message = "payload_tables.json names a payload table ${join(", ", setintersection(keys(local.glue_tables), keys(local.payload_tables)))} like an operational table: rename it in tunables.json, then run `make tables`."
    }
  }
}

resource "aws_athena_workgroup" "this" {
  name          = local.prefix
  description   = "Sluice ${var.environment}: queries over staged windows"
  force_destroy = var.force_destroy

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    result_configuration {
      output_location = "s3://${aws_s3_bucket.this["athena"].bucket}/results/"

      encryption_configuration {
        encryption_option = local.create_kms_key ? "SSE_KMS" : "SSE_S3"
        kms_key_arn       = local.kms_key_arn
      }
    }
  }
}

# Named queries (local.named_queries): the operational ones and the per-table ones.
resource "aws_athena_named_query" "this" {
  for_each = local.named_queries

  name        = each.value.name
  workgroup   = aws_athena_workgroup.this.name
  database    = aws_glue_catalog_database.this.name
  description = trimspace(trimprefix(split("\n", file("${path.module}/queries/${each.value.file}"))[0], "--"))
  query = templatefile("${path.module}/queries/${each.value.file}", {
    database      = aws_glue_catalog_database.this.name
    buffers_table = aws_glue_catalog_table.this["buffers"].name
    errors_table  = aws_glue_catalog_table.this["errors"].name
    # null for an operational query: a template that names ${table} there fails the plan.
    table = each.value.table == null ? null : aws_glue_catalog_table.this[each.value.table].name
  })

  lifecycle {
    precondition {
      condition     = length(local.named_query_clashes) == 0
      error_message = "Named queries ${join(", ", local.named_query_clashes)} are both an operational query in queries/ and a per-table one (<table>_<template>): rename one."
    }
  }
}
