# Tables: the idempotency records and the ledger, on-demand, TTL, PITR; the ledger's sparse
# index of windows not yet final, and who may query it.

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

run "tables_and_the_pending_windows_index" {
  command = plan

  assert {
    condition = alltrue([for t in aws_dynamodb_table.this : (
      t.billing_mode == "PAY_PER_REQUEST" && t.ttl[0].enabled && t.point_in_time_recovery[0].enabled
    )])
    error_message = "Both tables are on-demand, with TTL and point-in-time recovery."
  }

  assert {
    condition = (
      aws_dynamodb_table.this["idempotency"].hash_key == "id" &&
      aws_dynamodb_table.this["idempotency"].ttl[0].attribute_name == "expiration" &&
      { for a in aws_dynamodb_table.this["idempotency"].attribute : a.name => a.type } == { id = "S", landed_hour = "S" }
    )
    error_message = "The idempotency table: key id, TTL expiration, and the index's key attribute landed_hour (S) defined."
  }

  assert {
    condition = [for i in aws_dynamodb_table.this["idempotency"].global_secondary_index : (
      "${i.name} ${i.hash_key} ${i.range_key} ${i.projection_type}"
    )] == ["landed-hour landed_hour id ALL"]
    error_message = "The idempotency table has one index, landed-hour: hash landed_hour, range id, every attribute projected."
  }

  assert {
    condition = (
      aws_dynamodb_table.this["ledger"].hash_key == "pk" &&
      aws_dynamodb_table.this["ledger"].ttl[0].attribute_name == "expires_at" &&
      { for a in aws_dynamodb_table.this["ledger"].attribute : a.name => a.type } == { pk = "S", pending = "S", pending_since_ms = "N" }
    )
    error_message = "The ledger: key pk, TTL expires_at, and the index's key attributes pending (S) and pending_since_ms (N) defined."
  }

  assert {
    condition = [for i in aws_dynamodb_table.this["ledger"].global_secondary_index : (
      "${i.name} ${i.hash_key} ${i.range_key} ${i.projection_type}"
    )] == ["pending-windows pending pending_since_ms ALL"]
    error_message = "The ledger has one index, pending-windows: hash pending, range pending_since_ms, every attribute projected."
  }

  # --- who may query it: redrive, on the index's ARN only; nothing scans the ledger any more
  assert {
    condition = [for s in data.aws_iam_policy_document.redrive.statement : s.resources if contains(s.actions, "dynamodb:Query")] == [
      toset(["${aws_dynamodb_table.this["idempotency"].arn}/index/landed-hour"]),
      toset(["${aws_dynamodb_table.this["ledger"].arn}/index/pending-windows"]),
    ]
    error_message = "Redrive may Query the ledger's pending-windows index and the idempotency table's landed-hour index, and only them."
  }

  assert {
    condition = !anytrue(flatten([for doc in [
      data.aws_iam_policy_document.forwarder, data.aws_iam_policy_document.processor,
      data.aws_iam_policy_document.requeue, data.aws_iam_policy_document.delivery,
      data.aws_iam_policy_document.redrive,
    ] : [for s in doc.statement : contains(s.actions, "dynamodb:Scan")]]))
    error_message = "No function scans a table: the pending windows come from the index."
  }

  assert {
    condition     = !anytrue([for s in data.aws_iam_policy_document.delivery.statement : contains(s.actions, "dynamodb:Query")])
    error_message = "Delivery reads windows by key, never through the index."
  }
}
