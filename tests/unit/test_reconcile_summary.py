"""`sluice reconcile`'s summary counts the files the HTTPS intake landed apart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from delivery.reconciling import FileReport, FileStatus, ReconcileReport
from infrastructure.cli import reconcile
from transform.intake.keys import is_api_key

LANDED = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


def report(*keys: str) -> ReconcileReport:
    files = tuple(
        FileReport(key, "v1", f"{n:064x}", 1, LANDED, FileStatus.DELIVERED)
        for n, key in enumerate(keys)
    )
    return ReconcileReport(LANDED, LANDED.replace(hour=22), files)


def test_files_landed_by_api_are_counted_apart() -> None:
    # GIVEN two files put to S3 and one posted to the intake
    found = report("acme/a.json", "acme/api/files/2026-12-06/b.json", "globex/api/x.json")
    # THEN the summary and the JSON say one came by API
    assert "(1 by API)" in reconcile.summary(found)
    assert reconcile.as_json(found, [])["landed_by_api"] == 1


@pytest.mark.parametrize(
    ("key", "by_api"),
    [
        ("acme/api/files/2026-12-06/x", True),
        ("acme/api/events/2026-12-06/r.ndjson", True),
        ("acme/api/other/x", False),
        ("acme/x/api/files/y", False),
        ("api/files/x", False),
    ],
)
def test_which_keys_the_intake_lands(key: str, by_api: bool) -> None:
    assert is_api_key(key) is by_api
