# Glue tables from the Avro schemas with partition projection (the envelope's, and one per payload
# type from payload_tables.json); the Athena workgroup and the named queries.

mock_provider "aws" {
  source = "./tests/mocks"
  # Mocked computed values (ARNs, URLs, versions) are known at plan time, so assertions on
  # them need no apply.
  override_during = plan
}

variables {
  environment = "dev"
  package_dir = "./tests/fixtures/lambda"
}

run "tables_projection_and_workgroup" {
  command = plan

  assert {
    condition = jsonencode({ for c in aws_glue_catalog_table.this["buffers"].storage_descriptor[0].columns : c.name => c.type }) == jsonencode({
      schema_version      = "int"
      file_id             = "string"
      bucket              = "string"
      key                 = "string"
      version_id          = "string"
      sequencer           = "string"
      etag                = "string"
      size                = "bigint"
      event_time_ms       = "bigint"
      forwarded_at_ms     = "bigint"
      body_encoding       = "string"
      body                = "string"
      body_sha256         = "string"
      requeue_attempts    = "int"
      firehose_arrival_ms = "bigint"
      content_kind        = "string"
    })
    error_message = "Columns follow envelope.avsc: long -> bigint, [null, T] -> T, enum -> string."
  }

  assert {
    condition = [for c in aws_glue_catalog_table.this["buffers"].storage_descriptor[0].columns : c.name] == [
      for f in jsondecode(file("../schemas/envelope.avsc")).fields : f.name
    ]
    error_message = "Columns keep the schema's order."
  }

  assert {
    condition = (
      aws_glue_catalog_table.this["buffers"].storage_descriptor[0].ser_de_info[0].serialization_library == "org.openx.data.jsonserde.JsonSerDe" &&
      aws_glue_catalog_table.this["buffers"].storage_descriptor[0].location == "s3://sluice-dev-staging-123456789012/buffers/"
    )
    error_message = "The buffers table reads JSON lines under buffers/."
  }

  # --- partition projection
  assert {
    condition     = [for p in aws_glue_catalog_table.this["buffers"].partition_keys : p.name] == ["dt", "hour"]
    error_message = "Staged windows are partitioned by dt and hour."
  }

  assert {
    condition = (
      aws_glue_catalog_table.this["buffers"].parameters["projection.enabled"] == "true" &&
      aws_glue_catalog_table.this["buffers"].parameters["projection.dt.type"] == "date" &&
      aws_glue_catalog_table.this["buffers"].parameters["projection.dt.format"] == "yyyy-MM-dd" &&
      endswith(aws_glue_catalog_table.this["buffers"].parameters["projection.dt.range"], ",NOW") &&
      aws_glue_catalog_table.this["buffers"].parameters["projection.hour.type"] == "integer" &&
      aws_glue_catalog_table.this["buffers"].parameters["projection.hour.range"] == "0,23" &&
      aws_glue_catalog_table.this["buffers"].parameters["projection.hour.digits"] == "2" &&
      aws_glue_catalog_table.this["buffers"].parameters["storage.location.template"] == "s3://sluice-dev-staging-123456789012/buffers/dt=$${dt}/hour=$${hour}/"
    )
    error_message = "dt and hour are projected onto the Firehose prefix buffers/dt=yyyy-MM-dd/hour=HH/."
  }

  assert {
    condition = (
      aws_glue_catalog_table.this["errors"].parameters["projection.enabled"] == "true" &&
      aws_glue_catalog_table.this["errors"].parameters["projection.error_output_type.values"] == "processing-failed" &&
      aws_glue_catalog_table.this["errors"].parameters["storage.location.template"] == "s3://sluice-dev-staging-123456789012/errors/$${error_output_type}/dt=$${dt}/"
    )
    error_message = "The errors table is projected onto errors/<error-output-type>/dt=yyyy-MM-dd/."
  }

  # --- athena workgroup and queries
  assert {
    condition = (
      aws_athena_workgroup.this.configuration[0].enforce_workgroup_configuration &&
      aws_athena_workgroup.this.configuration[0].bytes_scanned_cutoff_per_query == 10737418240 &&
      aws_athena_workgroup.this.configuration[0].result_configuration[0].encryption_configuration[0].encryption_option == "SSE_S3"
    )
    error_message = "The workgroup enforces encrypted results and a bytes-scanned cutoff."
  }

  assert {
    condition = toset([for key in keys(aws_athena_named_query.this) : key if endswith(key, ".sql")]) == toset([
      for file in fileset("queries", "*.sql") : file
    ])
    error_message = "One operational named query per .sql file in queries/, keyed by its file name."
  }

  assert {
    condition = alltrue([for file in ["files_per_hour.sql", "trace_file.sql", "duplicate_records.sql", "errors_by_code.sql"] : (
      aws_athena_named_query.this[file].name == trimsuffix(file, ".sql")
    )])
    error_message = "The operational queries keep their names."
  }

  assert {
    condition = (
      strcontains(aws_athena_named_query.this["files_per_hour.sql"].query, "count(DISTINCT file_id)") &&
      strcontains(aws_athena_named_query.this["files_per_hour.sql"].query, "FROM \"sluice_dev\".\"buffers\"") &&
      !strcontains(aws_athena_named_query.this["files_per_hour.sql"].query, "$${")
    )
    error_message = "Counts are of DISTINCT file_id (Firehose can duplicate), against this environment's table."
  }
}

run "payload_tables_from_their_schemas" {
  command = plan

  assert {
    condition     = toset(keys(aws_glue_catalog_table.this)) == toset(concat(["buffers", "errors"], keys(jsondecode(file("../schemas/payload_tables.json")).tables)))
    error_message = "One Glue table per payload table in payload_tables.json, beside buffers and errors."
  }

  assert {
    condition = alltrue([for name, table in jsondecode(file("../schemas/payload_tables.json")).tables : (
      slice([for c in aws_glue_catalog_table.this[name].storage_descriptor[0].columns : c.name], 0, length(jsondecode(file("../schemas/${table.schema}")).fields)) == [
        for f in jsondecode(file("../schemas/${table.schema}")).fields : f.name
      ] &&
      slice([for c in aws_glue_catalog_table.this[name].storage_descriptor[0].columns : c.name], length(jsondecode(file("../schemas/${table.schema}")).fields), length(table.columns)) == [
        "file_id", "key", "version_id", "record_number", "event_time", "window_id", "valid", "error",
      ]
    )])
    error_message = "A payload table's columns are its schema's fields, in order, then the source columns (run `make tables` after changing a schema)."
  }

  assert {
    condition = jsonencode({ for c in aws_glue_catalog_table.this["orders"].storage_descriptor[0].columns : c.name => c.type }) == jsonencode({
      order_id      = "string"
      amount_pence  = "bigint"
      currency      = "string"
      note          = "string"
      file_id       = "string"
      key           = "string"
      version_id    = "string"
      record_number = "bigint"
      event_time    = "timestamp"
      window_id     = "string"
      valid         = "boolean"
      error         = "string"
    })
    error_message = "orders follows order.avsc: long -> bigint, enum -> string, [null, T] -> T; then the source columns."
  }

  assert {
    condition = (
      one([for c in aws_glue_catalog_table.this["customer_profiles"].storage_descriptor[0].columns : c.type if c.name == "address"]) == "struct<line1:string,city:string,postcode:string>" &&
      one([for c in aws_glue_catalog_table.this["customer_profiles"].storage_descriptor[0].columns : c.type if c.name == "tags"]) == "array<string>" &&
      one([for c in aws_glue_catalog_table.this["customer_profiles"].storage_descriptor[0].columns : c.type if c.name == "updated_at"]) == "timestamp"
    )
    error_message = "Records become structs, arrays arrays, timestamp-millis timestamps."
  }

  assert {
    condition = alltrue([for name in keys(jsondecode(file("../schemas/payload_tables.json")).tables) : (
      aws_glue_catalog_table.this[name].storage_descriptor[0].ser_de_info[0].serialization_library == "org.apache.hive.hcatalog.data.JsonSerDe" &&
      aws_glue_catalog_table.this[name].storage_descriptor[0].location == "s3://sluice-dev-staging-123456789012/tables/${name}/" &&
      aws_glue_catalog_table.this[name].storage_descriptor[0].compressed &&
      aws_glue_catalog_table.this[name].parameters["compressionType"] == "gzip"
    )])
    error_message = "A payload table reads gzip JSON lines under tables/<table>/ with the Hive JSON SerDe."
  }

  assert {
    condition = alltrue([for name in keys(jsondecode(file("../schemas/payload_tables.json")).tables) : (
      [for p in aws_glue_catalog_table.this[name].partition_keys : p.name] == ["dt", "hour"] &&
      aws_glue_catalog_table.this[name].parameters["storage.location.template"] == "s3://sluice-dev-staging-123456789012/tables/${name}/dt=$${dt}/hour=$${hour}/" &&
      { for k, v in aws_glue_catalog_table.this[name].parameters : k => v if k != "storage.location.template" } == { for k, v in aws_glue_catalog_table.this["buffers"].parameters : k => v if k != "storage.location.template" }
    )])
    error_message = "dt and hour are projected onto tables/<table>/dt=yyyy-MM-dd/hour=HH/ exactly as buffers/ is."
  }

  assert {
    condition = toset([for key in keys(aws_athena_named_query.this) : key if !endswith(key, ".sql")]) == toset(flatten([
      for table in keys(jsondecode(file("../schemas/payload_tables.json")).tables) : [for file in fileset("queries/per_table", "*.sql") : "${table}_${trimsuffix(file, ".sql")}"]
    ]))
    error_message = "Each template in queries/per_table/ is a named query per payload table, <table>_<template>."
  }

  assert {
    condition = alltrue([for kind in ["rows_per_hour", "invalid_rows", "late_rows"] : (
      aws_athena_named_query.this["orders_${kind}"].name == "orders_${kind}" &&
      strcontains(aws_athena_named_query.this["orders_${kind}"].query, "FROM \"sluice_dev\".\"orders\"") &&
      !strcontains(aws_athena_named_query.this["orders_${kind}"].query, "$${") &&
      aws_athena_named_query.this["orders_${kind}"].description == trimspace(trimprefix(split("\n", file("queries/per_table/${kind}.sql"))[0], "--"))
    )])
    error_message = "rows_per_hour, invalid_rows and late_rows exist for each table, against its Glue table, described by their first line."
  }

  assert {
    condition = (
      strcontains(aws_athena_named_query.this["meter_readings_invalid_rows"].query, "dt >= ?") &&
      strcontains(aws_athena_named_query.this["meter_readings_late_rows"].query, "dt >= ?")
    )
    error_message = "The row listings are bounded by a first dt parameter."
  }
}

run "athena_results_under_customer_key" {
  command = plan

  variables {
    create_kms_key = true
  }

  assert {
    condition = (
      aws_athena_workgroup.this.configuration[0].result_configuration[0].encryption_configuration[0].encryption_option == "SSE_KMS" &&
      aws_athena_workgroup.this.configuration[0].result_configuration[0].encryption_configuration[0].kms_key_arn == aws_kms_key.this[0].arn
    )
    error_message = "With a customer key, query results are encrypted with it."
  }
}

run "small_bytes_scanned_cutoff_refused" {
  command = plan

  variables {
    athena_bytes_scanned_cutoff = 1024
  }

  expect_failures = [var.athena_bytes_scanned_cutoff]
}
