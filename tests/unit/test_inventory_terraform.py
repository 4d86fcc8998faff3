"""The inventory check (delivery/inventory.py) and the Terraform that feeds it agree: the S3
Inventory configuration's name, prefix and fields (infrastructure/terraform/inventory.tf), and
the ledger item and staging prefixes redrive's role is limited to (iam.tf). `terraform test`
(tests/inventory.tftest.hcl) checks the same values on the planned resources; here, that they are
the ones the Python reads. Also the ledger items delivery may delete: its window leases."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from delivery import inventory
from delivery.ledger import LEASE_PREFIX
from transform.quarantine import REASONS_PREFIX

TERRAFORM: Final = Path(__file__).resolve().parents[2] / "infrastructure" / "terraform"

ALWAYS_LISTED: Final = frozenset({"Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker"})
"""The fields of every report that lists all versions (S3 User Guide, "Amazon S3 Inventory
list"); the others must be asked for in `optional_fields`."""


def local_string(name: str) -> str:
    match = re.search(
        rf'^\s*{name}\s*=\s*"([^"]*)"', (TERRAFORM / "inventory.tf").read_text(), re.M
    )
    assert match, f"inventory.tf: local {name} not found"
    return match.group(1)


def optional_fields() -> set[str]:
    text = (TERRAFORM / "inventory.tf").read_text()
    match = re.search(r"^\s*inventory_optional_fields\s*=\s*\[([^\]]*)\]", text, re.M)
    assert match, "inventory.tf: local inventory_optional_fields not found"
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def redrive_policy() -> str:
    text = (TERRAFORM / "iam.tf").read_text()
    match = re.search(r'^data "aws_iam_policy_document" "redrive" \{\n(.*?)^\}', text, re.M | re.S)
    assert match, "iam.tf: redrive's policy document not found"
    return match.group(1)


def test_reports_are_where_the_check_looks() -> None:
    assert local_string("inventory_name") == inventory.INVENTORY_ID
    # S3 appends the slash: <prefix>/<source bucket>/<configuration name>/
    assert local_string("inventory_prefix") + "/" == inventory.INVENTORY_PREFIX
    assert inventory.report_prefix("landing") == "inventory/landing/landing-versions/"


def test_reports_carry_every_field_the_check_reads() -> None:
    asked = optional_fields()
    assert set(inventory.REQUIRED_FIELDS) <= ALWAYS_LISTED | asked
    assert "ETag" in asked  # the notification announced again carries the upload's ETag
    assert not asked & ALWAYS_LISTED


def test_redrive_may_read_the_reports_and_write_only_its_cursor() -> None:
    policy = redrive_policy()
    assert '"${local.inventory_prefix}/*"' in policy  # ListBucket on the report folders
    assert "resources = [local.inventory_objects]" in policy  # GetObject of the reports
    assert f'values   = ["{inventory.CURSOR_KEY}"]' in policy  # PutItem on the cursor alone
    # HeadObject of reason files: GetObject on the quarantine prefix
    assert f'"${{local.staging_arn}}/{REASONS_PREFIX}*"' in policy


def test_the_window_lease_items_are_the_ones_delivery_may_delete() -> None:
    # GIVEN delivery's role (iam.tf), which may delete ledger items of one prefix only
    text = (TERRAFORM / "iam.tf").read_text()
    match = re.search(r'sid\s*=\s*"ReleaseWindowLease".*?values\s*=\s*\["([^"]+)"\]', text, re.S)
    assert match, "iam.tf: statement ReleaseWindowLease not found"
    # THEN that prefix is the lease's (delivery/lease.py releases what it took)
    assert match.group(1) == f"{LEASE_PREFIX}*"
