# One role per function, granting only the calls its code makes (grep `clients.` in transform/
# and delivery/), plus the Firehose and scheduler service roles. Streams and aliases are named
# by ARNs built from their names: a reference would make the functions depend on themselves.

locals {
  landing_arn = aws_s3_bucket.this["landing"].arn
  staging_arn = aws_s3_bucket.this["staging"].arn
  stream_arns = [for name in local.stream_names : "arn:${local.partition}:firehose:${local.region}:${local.account_id}:deliverystream/${name}"]

  # The payload tables' objects (infrastructure/payload_tables.py TABLES_PREFIX): delivery
  # writes them, Athena reads them (glue_athena.tf), they expire with the staging retention.
  tables_prefix = "tables/"

  # Reason files of held-back files and records (transform/quarantine.py).
  quarantine_objects = "${local.staging_arn}/quarantine/reasons/*"

  # What Firehose writes: delivered windows (firehose.buffers_prefix) and records it failed
  # to process or deliver (firehose.errors_prefix).
  firehose_objects = ["${local.staging_arn}/buffers/*", "${local.staging_arn}/errors/*"]

  # IAM authorises a Query of an index on the index's ARN, not the table's.
  ledger_pending_index_arn = "${aws_dynamodb_table.this["ledger"].arn}/index/${local.ledger_pending_index}"
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  for_each = local.functions

  name               = local.function_names[each.key]
  description        = "Sluice ${var.environment} ${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "lambda" {
  for_each = local.functions

  name   = "least-privilege"
  role   = aws_iam_role.lambda[each.key].id
  policy = data.aws_iam_policy_document.lambda[each.key].json
}

data "aws_iam_policy_document" "lambda" {
  for_each = local.functions

  source_policy_documents = [
    data.aws_iam_policy_document.lambda_common[each.key].json,
    {
      forwarder = data.aws_iam_policy_document.forwarder.json
      processor = data.aws_iam_policy_document.processor.json
      requeue   = data.aws_iam_policy_document.requeue.json
      delivery  = data.aws_iam_policy_document.delivery.json
      redrive   = data.aws_iam_policy_document.redrive.json
      intake    = data.aws_iam_policy_document.intake.json
      report    = data.aws_iam_policy_document.report.json
    }[each.key],
  ]
}

# Logs to its own group, X-Ray segments, VPC network interfaces and the customer key.
data "aws_iam_policy_document" "lambda_common" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda[each.key].arn}:*"]
  }

  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions for these actions
  }

  dynamic "statement" {
    for_each = var.vpc == null ? [] : [1]

    content {
      sid = "ManageVpcNetworkInterfaces"
      actions = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
      ]
      resources = ["*"] # EC2 describes and Lambda-managed ENIs take no resource ARNs
    }
  }

  dynamic "statement" {
    for_each = local.create_kms_key ? [1] : []

    content {
      sid       = "UseCustomerKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [local.kms_key_arn]
    }
  }
}

# transform/forwarder.py: resolve and read landing versions, idempotency records, PutRecordBatch,
# reason files; the event source mapping polls the ingest queue with this role.
data "aws_iam_policy_document" "forwarder" {
  statement {
    sid       = "ConsumeIngestQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.ingest.arn]
  }

  # ListBucket makes S3 answer 404 (NoSuchKey/NoSuchVersion), not 403, for a version deleted for
  # good: transform/versions.py tells "gone" from "denied" by that code.
  statement {
    sid       = "ListLandingVersions"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [local.landing_arn]
  }

  statement {
    sid       = "ReadLandingVersions"
    actions   = ["s3:GetObjectVersion"]
    resources = ["${local.landing_arn}/*"]
  }

  statement {
    sid       = "IdempotencyRecords"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"]
    resources = [aws_dynamodb_table.this["idempotency"].arn]
  }

  statement {
    sid       = "PutRecords"
    actions   = ["firehose:PutRecordBatch"]
    resources = local.stream_arns
  }

  statement {
    sid       = "WriteReasonFiles"
    actions   = ["s3:PutObject"]
    resources = [local.quarantine_objects]
  }
}

# transform/processor.py: reason files only.
data "aws_iam_policy_document" "processor" {
  statement {
    sid       = "WriteReasonFiles"
    actions   = ["s3:PutObject"]
    resources = [local.quarantine_objects]
  }
}

# transform/requeue.py: read errors/ objects, put records back, reason files, on-failure
# destination.
data "aws_iam_policy_document" "requeue" {
  statement {
    sid       = "ReadErrorObjects"
    actions   = ["s3:GetObject"]
    resources = ["${local.staging_arn}/errors/*"]
  }

  statement {
    sid       = "PutRecords"
    actions   = ["firehose:PutRecordBatch"]
    resources = local.stream_arns
  }

  statement {
    sid       = "WriteReasonFiles"
    actions   = ["s3:PutObject"]
    resources = [local.quarantine_objects]
  }

  statement {
    sid       = "OnFailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.requeue_dlq.arn]
  }
}

# delivery/handler.py: download the window, read `ref` bodies by version, write the payload
# tables' rows, tag the window delivered, the ledger, the MinIO secret, on-failure destination.
data "aws_iam_policy_document" "delivery" {
  statement {
    sid       = "ReadStagedWindows"
    actions   = ["s3:GetObject"]
    resources = ["${local.staging_arn}/buffers/*"]
  }

  # The rows of the window's files, one object per payload table and window part under
  # tables/<table>/ (infrastructure/payload_tables.py), written before the archive goes to MinIO.
  statement {
    sid       = "WriteTableRows"
    actions   = ["s3:PutObject"]
    resources = ["${local.staging_arn}/${local.tables_prefix}*"]
  }

  statement {
    sid       = "TagDeliveredWindows"
    actions   = ["s3:PutObjectTagging"]
    resources = ["${local.staging_arn}/buffers/*"]
  }

  # The landing versions read by reference, tagged delivered once archived (s3.tf: only those
  # leave S3 Standard).
  statement {
    sid       = "TagDeliveredRefBodies"
    actions   = ["s3:PutObjectVersionTagging"]
    resources = ["${local.landing_arn}/*"]
  }

  statement {
    sid       = "ReadRefBodies"
    actions   = ["s3:GetObjectVersion"]
    resources = ["${local.landing_arn}/*"]
  }

  # As for the forwarder: a `ref` body deleted for good must answer 404 (delivery/refs.py).
  statement {
    sid       = "TellGoneRefBodies"
    actions   = ["s3:ListBucket"]
    resources = [local.landing_arn]
  }

  statement {
    sid = "Ledger"
    # Claims are Puts inside TransactWriteItems, which IAM checks as PutItem; exclusion chunks
    # (EXCL# items) are written with BatchWriteItem.
    actions = [
      "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
      "dynamodb:BatchWriteItem",
    ]
    resources = [aws_dynamodb_table.this["ledger"].arn]
  }

  # The window's lease (delivery/lease.py, taken with PutItem above) is given back when the
  # work is done: DeleteItem on lease items only.
  statement {
    sid       = "ReleaseWindowLease"
    actions   = ["dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.this["ledger"].arn]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["LEASE#*"]
    }
  }

  statement {
    sid       = "ReadMinioSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.minio.arn]
  }

  statement {
    sid       = "OnFailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.delivery_dlq.arn]
  }

  # A window stopped near the function's deadline continues in a new invocation of the same
  # alias (delivery/handler.py).
  statement {
    sid       = "ContinueWindow"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.alias_arns["delivery"]]
  }
}

# delivery/redrive.py: drain the delivery DLQ, list recent windows, the ledger and its
# pending-windows index, MinIO's health through its secret, and invoke delivery's `live` alias;
# the hourly reconcile lists the landing bucket's versions and the reason files, and keeps its
# result under reconcile/; the daily inventory check (delivery/inventory.py) reads S3
# Inventory's reports, asks the idempotency table which versions the forwarder claimed, looks
# for their reason files and announces the others again on the ingest queue.
data "aws_iam_policy_document" "redrive" {
  statement {
    sid       = "DrainDeliveryDlq"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.delivery_dlq.arn]
  }

  statement {
    sid       = "ListStagedWindows"
    actions   = ["s3:ListBucket"]
    resources = [local.staging_arn]

    # inventory/: the report folders, and a 404 (not a 403) for a manifest not yet written.
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["buffers/*", "quarantine/reasons/*", "${local.inventory_prefix}/*"]
    }
  }

  statement {
    sid       = "ListLandedVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.landing_arn]
  }

  statement {
    sid       = "ReasonsAndReconcileResults"
    actions   = ["s3:GetObject"]
    resources = ["${local.staging_arn}/quarantine/reasons/*", "${local.staging_arn}/reconcile/*"]
  }

  statement {
    sid       = "WriteReconcileResults"
    actions   = ["s3:PutObject"]
    resources = ["${local.staging_arn}/reconcile/*"]
  }

  # The inventory check: each report's manifest.json and its gzip CSV data files (inventory.tf).
  # Whether a version was held back is a HeadObject of its reason file, authorised as GetObject
  # on quarantine/reasons/* above.
  statement {
    sid       = "ReadInventoryReports"
    actions   = ["s3:GetObject"]
    resources = [local.inventory_objects]
  }

  # Which of a report's versions the forwarder claimed: keys only, 100 a call.
  statement {
    sid       = "InventoryForwarderClaims"
    actions   = ["dynamodb:BatchGetItem"]
    resources = [aws_dynamodb_table.this["idempotency"].arn]
  }

  # A version the forwarder never saw is announced again as an S3 notification on the ingest
  # queue (the customer key, if any, is granted to every function in lambda_common).
  statement {
    sid       = "AnnounceUnseenVersions"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ingest.arn]
  }

  statement {
    sid       = "Ledger"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.this["ledger"].arn]
  }

  # The hourly reconcile reads what landed in an hour from the forwarder's index (a Query of one
  # hour's partition), never the landing bucket's history.
  statement {
    sid       = "LandedFilesByHour"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.this["idempotency"].arn}/index/${local.idempotency_landed_index}"]
  }

  # The sweep's low-water mark (delivery/ledger.py set_sweep_low_water): one item, so PutItem
  # is allowed on its key alone.
  statement {
    sid       = "LedgerSweepLowWater"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.this["ledger"].arn]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["SWEEP#staging"]
    }
  }

  # The inventory check's cursor (delivery/inventory.py CURSOR_KEY): one item, so PutItem is
  # allowed on its key alone (GetItem is in Ledger above).
  statement {
    sid       = "LedgerInventoryCursor"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.this["ledger"].arn]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = ["INVENTORY#landing"]
    }
  }

  # The CLAIMED and PARKED windows, oldest first (delivery/ledger.py pending_windows): a Query
  # of the sparse index replaces the Scan of the whole table, which redrive no longer makes.
  statement {
    sid       = "LedgerPendingWindows"
    actions   = ["dynamodb:Query"]
    resources = [local.ledger_pending_index_arn]
  }

  statement {
    sid       = "ReadMinioSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.minio.arn]
  }

  statement {
    sid       = "InvokeDelivery"
    actions   = ["lambda:InvokeFunction"]
    resources = [local.alias_arns["delivery"]]
  }
}

# --- Firehose -------------------------------------------------------------------------------

# transform/intake: files and events under each producer's api/ folder only, the health probe
# (a conditional put that never writes, which needs GetObject too), idempotency records, request
# counts and what it landed, the ledger's claims and windows for a file's status, the producers'
# key hashes.
data "aws_iam_policy_document" "intake" {
  statement {
    sid       = "LandUnderApi"
    actions   = ["s3:PutObject"]
    resources = ["${local.landing_arn}/*/api/*"]
  }

  statement {
    sid       = "HealthProbe"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${local.landing_arn}/_intake-health/*"]
  }

  statement {
    sid       = "IdempotencyAndRates"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.this["idempotency"].arn]
  }

  statement {
    sid       = "FileStatus"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem"]
    resources = [aws_dynamodb_table.this["ledger"].arn]
  }

  statement {
    sid       = "ProducerKeys"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.producers.arn]
  }
}

data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name               = "${local.prefix}-firehose"
  description        = "Sluice ${var.environment}: Firehose streams write to staging and invoke the processor"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
}

# The S3 actions are those the Firehose Developer Guide grants an S3 destination ("Grant
# Firehose access to an Amazon S3 destination"), split by the resource each is authorised on.
data "aws_iam_policy_document" "firehose" {
  # Objects only under the streams' `prefix` (buffers/) and `error_output_prefix` (errors/),
  # whose first folders tunables.schema.json pins: the rest of staging (quarantine/reasons/,
  # inventory/, reconcile/) is the functions' and S3 Inventory's, never Firehose's to overwrite.
  statement {
    sid       = "WriteDestinationPrefixes"
    actions   = ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    resources = local.firehose_objects
  }

  # Authorised on the bucket ARN, so not narrowable by resource. ListBucket carries no
  # s3:prefix condition: AWS does not document which listings Firehose makes, and one without
  # a prefix (a bucket check) would then be denied and stall delivery. It reveals keys only.
  statement {
    sid       = "LocateStagingBucket"
    actions   = ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [local.staging_arn]
  }

  statement {
    sid       = "InvokeProcessor"
    actions   = ["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"]
    resources = [local.alias_arns["processor"]]
  }

  statement {
    sid       = "WriteDeliveryLogs"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:*"]
  }

  dynamic "statement" {
    for_each = local.create_kms_key ? [1] : []

    content {
      sid       = "UseCustomerKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [local.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "least-privilege"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}
