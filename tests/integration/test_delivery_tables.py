"""Delivery writes the payload tables, in process: moto for AWS, SeaweedFS as MinIO.

A window of typed files (a CSV under readings/, NDJSON under orders/, a JSON file over the inline
limit under profiles/, so a `ref`) is delivered through the delivery handler; each test reads
the table objects back from the staging bucket and the archive from MinIO. The bodies of the
awkward CSV and NDJSON files are tests/events/tables/.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from delivery import delivering, handler
from delivery.ledger import WindowState
from infrastructure import environment
from infrastructure.payload_tables import SOURCE_COLUMNS
from infrastructure.tunables import TUNABLES_FILE, load_tunables
from tests.conftest import EVENTS, STAGING
from tests.integration.test_delivery import (
    EVENT_TIME_MS,
    deliver,
    delivered,
    ledger,
    provision_stack,
    stage,
    upload,
    window_id,
)
from tests.support import archives

pytestmark = pytest.mark.slow

FIXTURES = EVENTS / "tables"
PARTITION = "dt=2026-11-25/hour=12"
EVENT_TIME = "2026-11-25 12:00:00.000"
"""EVENT_TIME_MS as the tables write it."""


def write_tunables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **orders: Any) -> None:
    """The shipped tunables with fast retries, plain HTTP to SeaweedFS, and the orders/ rule
    changed by `orders` (e.g. invalid="report")."""
    document = json.loads(TUNABLES_FILE.read_text())
    document["delivery"].update(
        retry_backoff_base_seconds=0.01, retry_backoff_cap_seconds=0.05, minio_tls_required=False
    )
    for rule in document["processor"]["payload_schemas"]:
        if rule["prefix"] == "orders/":
            rule.update(orders)
    path = tmp_path / "tunables.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
    load_tunables.cache_clear()
    handler.dependencies.cache_clear()


@pytest.fixture
def stack(
    seaweedfs: Any,
    buckets: dict[str, str],
    function_env: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """Delivery's environment on moto in process and SeaweedFS; orders/ reports its invalid
    records (a window staged here can hold an NDJSON file with a bad line, as a report type's
    window does)."""
    write_tunables(tmp_path, monkeypatch, invalid="report")
    provision_stack(seaweedfs)
    function_env("delivery")
    return seaweedfs


@pytest.fixture
def minio(seaweedfs: Any) -> Minio:
    return Minio(
        seaweedfs.endpoint,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
        secure=False,
    )


def table_keys(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=STAGING, Prefix="tables/").get("Contents", [])
    return sorted(obj["Key"] for obj in listed)


def rows(s3: Any, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=STAGING, Key=key)["Body"].read()
    return [json.loads(line) for line in gzip.decompress(body).splitlines()]


def versions(s3: Any, key: str) -> list[bytes]:
    """Every version's bytes of a staging object, oldest first."""
    listed = s3.list_object_versions(Bucket=STAGING, Prefix=key).get("Versions", [])
    ordered = sorted((v for v in listed if v["Key"] == key), key=lambda v: v["LastModified"])
    return [
        s3.get_object(Bucket=STAGING, Key=key, VersionId=v["VersionId"])["Body"].read()
        for v in ordered
    ]


def profiles_body() -> bytes:
    """A JSON array of profiles over the 64 KiB inline limit (a `ref`); item 2 has no name."""
    items: list[dict[str, Any]] = [
        {
            "customer_id": f"C-{n:04d}",
            "name": f"Customer {n}",
            "balance_pence": n * 100,
            "updated_at": EVENT_TIME_MS - n,
            "tags": ["bulk"],
        }
        for n in range(1, 701)
    ]
    del items[1]["name"]
    body = json.dumps(items).encode()
    assert len(body) > load_tunables().forwarder.inline_limit_bytes
    return body


def metric_values(out: str, name: str) -> list[float]:
    """A metric's values in the embedded-metric-format documents Powertools printed."""
    found = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            if name in document:
                value = document[name]
                found += value if isinstance(value, list) else [value]
    return found


def _minio_down(*_: Any, **__: Any) -> Any:
    raise ConnectionError("MinIO is down")


def _by_number(found: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    for row in found:
        yield row["record_number"], row


# ---------------------------------------------------------------- tests


def test_typed_files_become_rows_before_the_archive_and_a_retry_rewrites_the_same_objects(
    stack: Any,
    s3: Any,
    minio: Minio,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a window with a CSV, an NDJSON file with bad lines, a JSON array over 64 KiB (a
    # ref) and an untyped file
    bodies = {
        "readings/2026/11/25/site a.csv": (FIXTURES / "readings.csv").read_bytes(),
        "orders/2026-11-25.ndjson": (FIXTURES / "orders.ndjson").read_bytes(),
        "profiles/export.json": profiles_body(),
        "acme/notes.txt": b"not typed",
    }
    envelopes = {key: upload(s3, key, body) for key, body in bodies.items()}
    assert envelopes["profiles/export.json"]["body_encoding"] == "ref"
    key = stage(s3, list(envelopes.values()))
    wid = window_id(key)
    # WHEN delivery runs while MinIO is down
    with monkeypatch.context() as patch:
        patch.setattr(delivering, "upload_verified", _minio_down)
        with pytest.raises(ConnectionError, match="MinIO is down"):
            deliver(key)
    # THEN the rows are in the staging bucket already, one object per table for the part
    expected_keys = [
        f"tables/customer_profiles/{PARTITION}/{wid}-0001.json.gz",
        f"tables/meter_readings/{PARTITION}/{wid}-0001.json.gz",
        f"tables/orders/{PARTITION}/{wid}-0001.json.gz",
    ]
    assert table_keys(s3) == expected_keys
    first = {k: versions(s3, k) for k in expected_keys}
    assert archives(minio, stack.bucket) == {}

    # WHEN Lambda retries the window with MinIO back
    handler.dependencies.cache_clear()
    assert deliver(key)["windows"][0]["outcome"] == "delivered"

    # THEN every file reaches MinIO byte for byte, typed or not
    assert dict(delivered(minio, stack.bucket)) == bodies
    assert ledger().get_window(wid).state is WindowState.DELIVERED
    # ... the retry rewrote the same objects with the same bytes: no new key, no duplicate
    assert table_keys(s3) == expected_keys
    for table_key, [written] in first.items():
        assert versions(s3, table_key) == [written, written]
    readings, orders, profiles = (rows(s3, k) for k in sorted(expected_keys, key=_table_order))

    # ... each CSV data row is a typed row, with its source columns; bad rows say why
    source = {
        "key": "readings/2026/11/25/site a.csv",
        "file_id": envelopes["readings/2026/11/25/site a.csv"]["file_id"],
        "version_id": envelopes["readings/2026/11/25/site a.csv"]["version_id"],
        "event_time": EVENT_TIME,
        "window_id": wid,
    }
    assert [row["record_number"] for row in readings] == [1, 2, 3, 4, 5, 6, 7]
    by_number = dict(_by_number(readings))
    assert by_number[3] == {
        "meter_id": "M-003",
        "read_at": "2026-11-25 12:30:00.250",
        "kwh": 0.75,
        "estimated": None,
        "note": 'two\r\nlines and "quotes"',
        **source,
        "record_number": 3,
        "valid": True,
        "error": None,
    }
    assert list(by_number[3])[-len(SOURCE_COLUMNS) :] == [n for n, _, _ in SOURCE_COLUMNS]
    assert {n: r["error"] for n, r in by_number.items() if not r["valid"]} == {
        4: "kwh is 'not-a-number', expected a finite double",
        5: "kwh is empty, expected double",
        7: "row has 2 cells, the header 6",
    }
    assert by_number[4]["meter_id"] is None
    # ... each NDJSON line a row numbered by line, the bad ones invalid
    assert [(r["record_number"], r["valid"], r["order_id"]) for r in orders] == [
        (1, True, "A-1"),
        (2, True, "A-2"),
        (4, False, None),
        (5, False, None),
        (6, True, "A-5"),
    ]
    assert orders[2]["error"] == (
        "fails payloads/order.avsc: amount_pence is 'lots' (str), expected long"
    )
    # ... and each item of the ref's array a row, read from the ref's bytes
    assert len(profiles) == 700
    assert [r["record_number"] for r in profiles if not r["valid"]] == [2]
    assert profiles[0]["updated_at"] == "2026-11-25 11:59:59.999"
    assert profiles[0]["tags"] == ["bulk"]
    assert {r["key"] for r in profiles} == {"profiles/export.json"}
    # ... and the rows and invalid rows are counted in the delivery's metrics
    out = capsys.readouterr().out
    assert sum(metric_values(out, "TableRowsWritten")) == 7 + 5 + 700
    assert sum(metric_values(out, "TableRowsInvalid")) == 3 + 2 + 1

    # WHEN the settled window is delivered again
    assert deliver(key)["windows"][0]["outcome"] == "already-delivered"
    # THEN nothing is written again
    for table_key, [written] in first.items():
        assert versions(s3, table_key) == [written, written]


def _table_order(key: str) -> int:
    return ["meter_readings", "orders", "customer_profiles"].index(key.split("/")[1])


def test_a_file_in_two_windows_has_its_rows_written_once(stack: Any, s3: Any) -> None:
    # GIVEN two windows that both carry the same orders file (a forwarder retry), one of them
    # with another orders file
    shared = upload(s3, "orders/shared.ndjson", (FIXTURES / "orders.ndjson").read_bytes())
    other = upload(
        s3, "orders/other.ndjson", b'{"order_id": "O", "amount_pence": 1, "currency": "EUR"}\n'
    )
    first = stage(s3, [shared])
    second = stage(s3, [other, shared])
    # WHEN both are delivered
    deliver(first)
    deliver(second)
    # THEN the shared file's rows are in the table once, under the window that owns it
    all_rows = [row for key in table_keys(s3) for row in rows(s3, key)]
    assert sorted((r["key"], r["window_id"]) for r in all_rows if r["record_number"] == 1) == [
        ("orders/other.ndjson", window_id(second)),
        ("orders/shared.ndjson", window_id(first)),
    ]
    assert len([r for r in all_rows if r["key"] == "orders/shared.ndjson"]) == 5


def test_a_ref_its_schema_holds_back_has_no_rows_and_its_table_object_is_empty(
    stack: Any, s3: Any, minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN orders/ as shipped (invalid: quarantine), and a window with an NDJSON ref over
    # 64 KiB whose last line fails the schema
    write_tunables(tmp_path, monkeypatch)
    good = b'{"order_id": "A", "amount_pence": 1, "currency": "GBP"}\n' * 1500
    body = good + b'{"order_id": "B", "amount_pence": "x", "currency": "GBP"}\n'
    envelope = upload(s3, "orders/big.ndjson", body)
    assert envelope["body_encoding"] == "ref"
    key = stage(s3, [envelope, upload(s3, "acme/a.txt", b"a")])
    # WHEN it is delivered
    deliver(key)
    # THEN the ref is excluded (as before tables), and its table object is there but empty:
    # an attempt that wrote its rows before the exclusion was found is overwritten
    assert [k for k, _ in delivered(minio, stack.bucket)] == ["acme/a.txt"]
    assert table_keys(s3) == [f"tables/orders/{PARTITION}/{window_id(key)}-0001.json.gz"]
    assert rows(s3, table_keys(s3)[0]) == []
