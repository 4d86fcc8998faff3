# Glue tables from the Avro schema with partition projection; the Athena workgroup and queries.

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
    condition     = toset(keys(aws_athena_named_query.this)) == toset(["files_per_hour.sql", "trace_file.sql", "duplicate_records.sql", "errors_by_code.sql"])
    error_message = "One named query per .sql file."
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
