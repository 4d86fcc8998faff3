# The forwarder's idempotency records and delivery's ledger (DESIGN §4a). Key, TTL and index
# attribute names are those transform/idempotency.py and delivery/ledger.py write.

locals {
  tables = {
    idempotency = {
      name          = local.names.idempotency_table
      hash_key      = local.idempotency_key
      ttl_attribute = local.idempotency_ttl_attribute
      attributes = {
        (local.idempotency_key)         = "S"
        (local.idempotency_landed_hour) = "S"
      }
      # What landed, by the hour of its S3 event (transform/idempotency.py): the hourly reconcile
      # reads one hour's files with a Query, never a listing of the landing bucket's history.
      indexes = [
        {
          name      = local.idempotency_landed_index
          hash_key  = local.idempotency_landed_hour
          range_key = local.idempotency_key
        },
      ]
    }
    ledger = {
      name          = local.names.ledger_table
      hash_key      = local.ledger_key
      ttl_attribute = local.ledger_ttl_attribute
      attributes = {
        (local.ledger_key)           = "S"
        (local.ledger_pending_key)   = "S"
        (local.ledger_pending_since) = "N"
      }
      # Sparse: only windows not yet final carry `pending`, so redrive and `sluice redrive
      # --parked` read the CLAIMED or PARKED windows, oldest first, with a Query whose cost is
      # their number, not a Scan of the table's history (one FILE item per file for 40 days).
      indexes = [
        {
          name      = local.ledger_pending_index
          hash_key  = local.ledger_pending_key
          range_key = local.ledger_pending_since
        },
      ]
    }
  }
}

resource "aws_dynamodb_table" "this" {
  #checkov:skip=CKV_AWS_119:The customer key is used whenever there is one (create_kms_key, set in env/prod.tfvars, or producers of other accounts); without it DynamoDB's AWS-owned key is the chosen default
  for_each = local.tables

  name                        = each.value.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = each.value.hash_key
  deletion_protection_enabled = var.deletion_protection

  # DynamoDB accepts definitions of key attributes only: the table's and its indexes'.
  dynamic "attribute" {
    for_each = each.value.attributes

    content {
      name = attribute.key
      type = attribute.value
    }
  }

  # Every attribute is projected: a Query answers without reading the table.
  dynamic "global_secondary_index" {
    for_each = each.value.indexes

    content {
      name            = global_secondary_index.value.name
      hash_key        = global_secondary_index.value.hash_key
      range_key       = global_secondary_index.value.range_key
      projection_type = "ALL"
    }
  }

  ttl {
    attribute_name = each.value.ttl_attribute
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  # Without a customer key DynamoDB encrypts with an AWS-owned key.
  server_side_encryption {
    enabled     = local.create_kms_key
    kms_key_arn = local.kms_key_arn
  }
}
