# The forwarder's idempotency records and delivery's ledger (DESIGN §4a). Key and TTL attribute
# names are those transform/idempotency.py and delivery/ledger.py write.

locals {
  tables = {
    idempotency = {
      name          = local.names.idempotency_table
      hash_key      = local.idempotency_key
      ttl_attribute = local.idempotency_ttl_attribute
    }
    ledger = {
      name          = local.names.ledger_table
      hash_key      = local.ledger_key
      ttl_attribute = local.ledger_ttl_attribute
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

  attribute {
    name = each.value.hash_key
    type = "S"
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
