# S3 Inventory of the landing bucket for redrive's daily inventory check (delivery/inventory.py):
# a lost S3 event leaves no trace in the ingest index, the ledger or the manifests, so the check
# reads what S3 itself lists. Once a day S3 writes every version of the landing bucket (CSV,
# gzip) to the staging bucket under `inventory/<landing bucket>/landing-versions/`; redrive reads
# the newest report and announces again, on the ingest queue, each version the forwarder never
# claimed. The staging bucket's policy (s3.tf) admits S3's delivery, its lifecycle keeps a week
# of reports, and with a customer key the key policy (kms.tf) lets S3 encrypt them.

locals {
  # delivery/inventory.py INVENTORY_ID and INVENTORY_PREFIX ("inventory/"): S3 writes under
  # `<prefix>/<source bucket>/<configuration name>/`.
  inventory_name   = "landing-versions"
  inventory_prefix = "inventory"
  # What S3 Inventory may write, and what redrive reads.
  inventory_objects = "${local.staging_arn}/${local.inventory_prefix}/*"

  # Besides Bucket, Key, VersionId, IsLatest and IsDeleteMarker (always there when every version
  # is listed), the check needs each version's size and landing time (delivery/inventory.py
  # REQUIRED_FIELDS) and its ETag for the S3 notification it sends again.
  inventory_optional_fields = ["Size", "LastModifiedDate", "ETag"]

  # Redrive reads only the newest report (a report in hand is finished within the day), so a
  # week of them covers a redrive outage of days and keeps a few for a look by hand.
  inventory_retention_days = 7
}

resource "aws_s3_bucket_inventory" "landing" {
  bucket  = aws_s3_bucket.this["landing"].id
  name    = local.inventory_name
  enabled = true

  # Every version, not only current ones: an upload overwritten or deleted before its event
  # reached the forwarder is a version the forwarder never saw all the same.
  included_object_versions = "All"
  optional_fields          = local.inventory_optional_fields

  schedule {
    frequency = "Daily"
  }

  destination {
    bucket {
      bucket_arn = aws_s3_bucket.this["staging"].arn
      account_id = local.account_id
      format     = "CSV"
      prefix     = local.inventory_prefix

      # As the staging bucket: the customer key when there is one (its policy admits S3 for
      # this configuration). S3 Inventory cannot encrypt with the AWS-managed aws/s3 key that
      # is the bucket's default otherwise, so the reports then get SSE-S3.
      encryption {
        dynamic "sse_kms" {
          for_each = local.create_kms_key ? [local.kms_key_arn] : []

          content {
            key_id = sse_kms.value
          }
        }

        dynamic "sse_s3" {
          for_each = local.create_kms_key ? [] : [1]

          content {}
        }
      }
    }
  }

  # S3 checks no grant when the configuration is put; the staging bucket's policy must be in
  # place before the first delivery (within 48 hours).
  depends_on = [aws_s3_bucket_policy.this]
}

# Merged into the staging bucket's policy (s3.tf, data.aws_iam_policy_document.bucket): S3
# delivers the landing bucket's reports under inventory/, for this account only.
data "aws_iam_policy_document" "inventory_destination" {
  statement {
    sid       = "S3InventoryWritesLandingReports"
    actions   = ["s3:PutObject"]
    resources = [local.inventory_objects]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this["landing"].arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-acl"
      values   = ["bucket-owner-full-control"]
    }
  }
}
