# Athena over the staging bucket: staged windows (buffers/) and Firehose's error output
# (errors/), partitions projected from the key layout, so no crawler and no MSCK REPAIR.

locals {
  staging_location = "s3://${aws_s3_bucket.this["staging"].bucket}"

  json_serde = {
    library = "org.openx.data.jsonserde.JsonSerDe"
    # Firehose can duplicate records and a window may hold a line from a newer schema: skip
    # what does not parse rather than fail the query.
    parameters = { "ignore.malformed.json" = "true" }
  }

  glue_tables = {
    buffers = {
      description = "Staged windows: one envelope per line (infrastructure/schemas/envelope.avsc). Firehose can duplicate records: count DISTINCT file_id."
      location    = "${local.staging_location}/buffers/"
      columns     = local.buffers_columns
      partitions = [
        { name = "dt", type = "string", comment = "Firehose arrival date of the window's oldest record, yyyy-MM-dd (UTC)" },
        { name = "hour", type = "string", comment = "Its hour, HH (UTC)" },
      ]
      projection = {
        "projection.dt.type"          = "date"
        "projection.dt.format"        = "yyyy-MM-dd"
        "projection.dt.range"         = "${var.partition_projection_start},NOW"
        "projection.dt.interval"      = "1"
        "projection.dt.interval.unit" = "DAYS"
        "projection.hour.type"        = "integer"
        "projection.hour.range"       = "0,23"
        "projection.hour.digits"      = "2"
        "storage.location.template"   = "${local.staging_location}/buffers/dt=$${dt}/hour=$${hour}/"
      }
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
    }
  }
}

resource "aws_glue_catalog_database" "this" {
  name        = local.names.glue_database
  description = "Sluice ${var.environment}: staged windows and Firehose errors"
}

resource "aws_glue_catalog_table" "this" {
  for_each = local.glue_tables

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
      serialization_library = local.json_serde.library
      parameters            = local.json_serde.parameters
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

# Named queries, one per .sql file in queries/ (its first comment line is the description).
resource "aws_athena_named_query" "this" {
  for_each = fileset("${path.module}/queries", "*.sql")

  name        = trimsuffix(each.key, ".sql")
  workgroup   = aws_athena_workgroup.this.name
  database    = aws_glue_catalog_database.this.name
  description = trimspace(trimprefix(split("\n", file("${path.module}/queries/${each.key}"))[0], "--"))
  query = templatefile("${path.module}/queries/${each.key}", {
    database      = aws_glue_catalog_database.this.name
    buffers_table = aws_glue_catalog_table.this["buffers"].name
    errors_table  = aws_glue_catalog_table.this["errors"].name
  })
}
