# Functions: settings from tunables.json, `live` aliases, the event source mapping, delivery's
# async configuration, redrive's single run without retries, environments bound to resources,
# roles.

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

run "functions_triggers_and_roles" {
  command = plan

  assert {
    condition = {
      for name, f in aws_lambda_function.this : name => "${f.handler} ${f.memory_size} ${f.timeout} ${f.ephemeral_storage[0].size}"
      } == {
      forwarder = "transform.forwarder.lambda_handler 512 30 512"
      processor = "transform.processor.lambda_handler 1024 60 512"
      requeue   = "transform.requeue.lambda_handler 512 120 512"
      delivery  = "delivery.handler.lambda_handler 1024 900 10240"
      redrive   = "delivery.redrive.lambda_handler 512 300 512"
      intake    = "transform.intake.handler.lambda_handler 512 29 512"
      report    = "delivery.report.lambda_handler 1024 900 512"
    }
    error_message = "Handler, memory, timeout and ephemeral storage must be those of tunables.json."
  }

  assert {
    condition = alltrue([for f in aws_lambda_function.this : (
      f.runtime == "python3.12" && f.architectures == tolist(["x86_64"]) &&
      f.tracing_config[0].mode == "Active" && f.publish &&
      f.source_code_hash == filebase64sha256("./tests/fixtures/lambda/${trimprefix(f.function_name, "sluice-dev-")}.zip")
    )])
    error_message = "Python 3.12, X-Ray active, published, each from its own package."
  }

  assert {
    condition = alltrue([for name, a in aws_lambda_alias.this : (
      a.name == "live" && a.function_version == aws_lambda_function.this[name].version && length(a.routing_config) == 0
    )])
    error_message = "Each function has a live alias on its published version, without routing by default."
  }

  assert {
    condition     = alltrue([for name, g in aws_cloudwatch_log_group.lambda : g.name == "/aws/lambda/sluice-dev-${name}" && g.retention_in_days == 30])
    error_message = "Each function logs to its own group, kept 30 days."
  }

  assert {
    condition     = toset([for r in aws_iam_role.lambda : r.name]) == toset([for f in aws_lambda_function.this : f.function_name]) && length(aws_iam_role_policy.lambda) == 7
    error_message = "One role per function."
  }

  # --- event source mapping reports partial failures
  assert {
    condition     = aws_lambda_event_source_mapping.ingest.function_response_types == toset(["ReportBatchItemFailures"])
    error_message = "The forwarder answers partial batch responses: ReportBatchItemFailures must be set."
  }

  assert {
    condition = (
      aws_lambda_event_source_mapping.ingest.function_name == aws_lambda_alias.this["forwarder"].arn &&
      aws_lambda_event_source_mapping.ingest.event_source_arn == aws_sqs_queue.ingest.arn &&
      aws_lambda_event_source_mapping.ingest.batch_size == 10 &&
      aws_lambda_event_source_mapping.ingest.maximum_batching_window_in_seconds == 1 &&
      aws_lambda_event_source_mapping.ingest.scaling_config[0].maximum_concurrency == 20
    )
    error_message = "The mapping feeds the forwarder's live alias in batches of 10, window 1 s, at most 20 concurrent."
  }

  # --- delivery async configuration on live alias
  assert {
    condition = (
      aws_lambda_function_event_invoke_config.delivery.function_name == aws_lambda_function.this["delivery"].function_name &&
      aws_lambda_function_event_invoke_config.delivery.qualifier == "live" &&
      aws_lambda_function_event_invoke_config.delivery.maximum_retry_attempts == 2 &&
      aws_lambda_function_event_invoke_config.delivery.maximum_event_age_in_seconds == 21600 &&
      aws_lambda_function_event_invoke_config.delivery.destination_config[0].on_failure[0].destination == aws_sqs_queue.delivery_dlq.arn
    )
    error_message = "Delivery's retries, event age and on-failure destination (the delivery DLQ) are set on the live alias S3 invokes."
  }

  assert {
    condition = (
      aws_lambda_function_event_invoke_config.requeue.qualifier == "live" &&
      aws_lambda_function_event_invoke_config.requeue.destination_config[0].on_failure[0].destination == aws_sqs_queue.requeue_dlq.arn
    )
    error_message = "Requeue's on-failure destination is the requeue DLQ, on its live alias."
  }

  # --- redrive: one run at a time, never retried (the next scheduled run redoes a failed one)
  assert {
    condition = {
      for name, f in aws_lambda_function.this : name => f.reserved_concurrent_executions
      } == {
      forwarder = -1
      processor = -1
      requeue   = -1
      delivery  = -1
      redrive   = 1
      intake    = -1
      report    = -1
    }
    error_message = "Redrive reserves a concurrency of 1; the others are unreserved by default."
  }

  assert {
    condition = (
      aws_lambda_function_event_invoke_config.redrive.function_name == aws_lambda_function.this["redrive"].function_name &&
      aws_lambda_function_event_invoke_config.redrive.qualifier == "live" &&
      aws_lambda_function_event_invoke_config.redrive.maximum_retry_attempts == 0 &&
      aws_lambda_function_event_invoke_config.redrive.maximum_event_age_in_seconds == 300 &&
      length(aws_lambda_function_event_invoke_config.redrive.destination_config) == 0
    )
    error_message = "Lambda never retries redrive's asynchronous invocations, and drops one not begun within the 5-minute interval."
  }

  assert {
    condition = (
      aws_scheduler_schedule.redrive.schedule_expression == "rate(5 minutes)" &&
      aws_scheduler_schedule.redrive.target[0].arn == aws_lambda_alias.this["redrive"].arn &&
      aws_scheduler_schedule.redrive.target[0].retry_policy[0].maximum_retry_attempts == 0 &&
      aws_scheduler_schedule.redrive.target[0].retry_policy[0].maximum_event_age_in_seconds == 300
    )
    error_message = "The scheduler invokes redrive's live alias every 5 minutes and never retries a run."
  }

  # --- environments bind resources
  assert {
    condition = aws_lambda_function.this["forwarder"].environment[0].variables == tomap({
      POWERTOOLS_SERVICE_NAME      = "forwarder"
      POWERTOOLS_METRICS_NAMESPACE = "Sluice"
      POWERTOOLS_LOG_LEVEL         = "INFO"
      SLUICE_STAGING_BUCKET        = "sluice-dev-staging-123456789012"
      SLUICE_IDEMPOTENCY_TABLE     = "sluice-dev-idempotency"
      SLUICE_FIREHOSE_STREAMS      = "sluice-dev-0,sluice-dev-1"
    })
    error_message = "The forwarder's environment: tunables' static variables plus its resource_environment bound to names."
  }

  assert {
    condition = aws_lambda_function.this["redrive"].environment[0].variables == tomap({
      POWERTOOLS_SERVICE_NAME      = "redrive"
      POWERTOOLS_METRICS_NAMESPACE = "Sluice"
      POWERTOOLS_LOG_LEVEL         = "INFO"
      SLUICE_LANDING_BUCKET        = "sluice-dev-landing-123456789012"
      SLUICE_STAGING_BUCKET        = "sluice-dev-staging-123456789012"
      SLUICE_LEDGER_TABLE          = "sluice-dev-ledger"
      SLUICE_IDEMPOTENCY_TABLE     = "sluice-dev-idempotency"
      SLUICE_MINIO_SECRET          = "sluice-dev/minio"
      SLUICE_DELIVERY_DLQ_URL      = aws_sqs_queue.delivery_dlq.url
      SLUICE_DELIVERY_FUNCTION     = "arn:aws:lambda:eu-west-2:123456789012:function:sluice-dev-delivery:live"
      SLUICE_INGEST_QUEUE_URL      = aws_sqs_queue.ingest.url
    })
    error_message = "Redrive invokes delivery's live alias, drains the delivery DLQ, reconciles the landing bucket hourly and announces unseen versions on the ingest queue."
  }

  assert {
    condition = alltrue([for name, f in aws_lambda_function.this : (
      sort(keys(f.environment[0].variables)) == sort(concat(
        keys(jsondecode(file("../tunables.json")).functions[name].environment),
        jsondecode(file("../tunables.json")).functions[name].resource_environment,
      ))
    )])
    error_message = "Every function gets exactly its static environment and its resource_environment."
  }

  # --- least privilege highlights
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.forwarder.statement : (
      contains(s.actions, "s3:GetObjectVersion") && s.resources == toset(["${aws_s3_bucket.this["landing"].arn}/*"])
    )])
    error_message = "The forwarder reads exact landing versions: s3:GetObjectVersion."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.delivery.statement : (
      contains(s.actions, "s3:GetObjectVersion") && s.resources == toset(["${aws_s3_bucket.this["landing"].arn}/*"])
    )])
    error_message = "Delivery reads ref bodies by version: s3:GetObjectVersion."
  }

  assert {
    condition = [for s in data.aws_iam_policy_document.delivery.statement : s.resources if contains(s.actions, "s3:PutObject")] == [
      toset(["${aws_s3_bucket.this["staging"].arn}/tables/*"]),
    ]
    error_message = "Delivery writes objects only under staging's tables/ (the payload tables' rows)."
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.redrive.statement : (
      s.actions == toset(["lambda:InvokeFunction"]) &&
      s.resources == toset(["arn:aws:lambda:eu-west-2:123456789012:function:sluice-dev-delivery:live"])
    )])
    error_message = "Redrive may invoke delivery's live alias, and nothing else."
  }

  assert {
    condition = alltrue(flatten([for doc in [
      data.aws_iam_policy_document.forwarder, data.aws_iam_policy_document.processor,
      data.aws_iam_policy_document.requeue, data.aws_iam_policy_document.delivery,
      data.aws_iam_policy_document.redrive,
      ] : [for s in doc.statement : (
        !anytrue([for a in s.actions : endswith(a, ":*") || a == "*"]) && !contains(s.resources, "*")
    )]]))
    error_message = "Function policies name their actions and resources: no wildcards."
  }

  # --- no vpc by default
  assert {
    condition     = alltrue([for f in aws_lambda_function.this : length(f.vpc_config) == 0]) && length(aws_vpc_endpoint.interface) == 0 && length(aws_security_group.lambda) == 0
    error_message = "Without var.vpc, no VPC resources."
  }
}

run "blue_green_weighted_routing" {
  command = plan

  variables {
    live_routing = {
      delivery = { version = "6", weight = 0.1 }
    }
  }

  assert {
    condition     = aws_lambda_alias.this["delivery"].routing_config[0].additional_version_weights == tomap({ "6" = 0.1 })
    error_message = "live_routing sends the given share of invocations to the given version."
  }

  assert {
    condition     = length(aws_lambda_alias.this["forwarder"].routing_config) == 0
    error_message = "Routing applies only to the functions named."
  }
}

run "overrides_and_vpc" {
  command = plan

  variables {
    lambda_architecture = "arm64"
    function_overrides = {
      delivery = { memory_mb = 2048, reserved_concurrency = 50 }
    }
    vpc = {
      vpc_id            = "vpc-0123456789abcdef0"
      subnet_ids        = ["subnet-0a", "subnet-0b"]
      route_table_ids   = ["rtb-0a"]
      minio_cidr_blocks = ["10.20.0.0/16"]
      minio_port        = 9000
    }
  }

  assert {
    condition     = aws_lambda_function.this["delivery"].memory_size == 2048 && aws_lambda_function.this["delivery"].reserved_concurrent_executions == 50 && aws_lambda_function.this["forwarder"].reserved_concurrent_executions == -1
    error_message = "function_overrides replace memory and reserve concurrency for the named function only."
  }

  assert {
    condition     = aws_lambda_function.this["redrive"].reserved_concurrent_executions == 1
    error_message = "Overrides of other functions leave redrive at one run at a time."
  }

  assert {
    condition     = alltrue([for f in aws_lambda_function.this : f.architectures == tolist(["arm64"]) && f.vpc_config[0].subnet_ids == toset(["subnet-0a", "subnet-0b"])])
    error_message = "Architecture and VPC apply to every function."
  }

  assert {
    condition = (
      toset(keys(aws_vpc_endpoint.interface)) == toset(["secretsmanager", "sqs", "firehose", "lambda", "xray"]) &&
      toset(keys(aws_vpc_endpoint.gateway)) == toset(["s3", "dynamodb"]) &&
      aws_vpc_endpoint.gateway["s3"].service_name == "com.amazonaws.eu-west-2.s3"
    )
    error_message = "In a VPC the functions reach AWS through gateway and interface endpoints."
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.minio["10.20.0.0/16"].from_port == 9000 && length(aws_vpc_security_group_egress_rule.https_via_nat) == 0
    error_message = "The functions may reach MinIO on its port; no open HTTPS egress when endpoints exist."
  }

  assert {
    condition     = anytrue([for s in data.aws_iam_policy_document.lambda_common["delivery"].statement : contains(s.actions, "ec2:CreateNetworkInterface")])
    error_message = "Functions in a VPC may manage their network interfaces."
  }
}

run "delivery_storage_too_small_for_a_part_refused" {
  command = plan

  variables {
    function_overrides = {
      delivery = { ephemeral_storage_mb = 2048 }
    }
  }

  expect_failures = [aws_lambda_function.this]
}

run "redrive_overrides_keep_one_run_at_a_time" {
  command = plan

  variables {
    function_overrides = {
      redrive = { memory_mb = 1024, reserved_concurrency = 1 }
    }
  }

  assert {
    condition     = aws_lambda_function.this["redrive"].memory_size == 1024 && aws_lambda_function.this["redrive"].reserved_concurrent_executions == 1
    error_message = "Redrive's memory may be overridden; its concurrency stays 1."
  }
}

run "redrive_concurrency_other_than_one_refused" {
  command = plan

  variables {
    function_overrides = {
      redrive = { reserved_concurrency = 2 }
    }
  }

  expect_failures = [var.function_overrides]
}
