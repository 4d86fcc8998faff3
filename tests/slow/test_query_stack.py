"""`sluice query` on the local stack (issue 17): a known workload lands, is delivered, and every
named query, operational and per payload table, runs through the command with DuckDB over the
staging bucket. Each result is compared with what was landed, and with the staged objects read
directly from S3: files per hour, the traced file's window, the duplicate, the error output, the
rows of each payload type, their invalid and late rows.

The workload: orders/ NDJSON (two valid files and one with a bad line, which the processor
quarantines: Firehose's error output), readings/ CSV (a BOM, CRLF, quoted fields with an embedded
newline and doubled quotes, empty cells, and a file with a row of the wrong type), profiles/
JSON (one object, an array, an array with an invalid item, an array over the forwarder's 64 KiB
inline limit: a `ref`), and two files of no payload type. One staged line is then staged again,
as Firehose may, to give duplicate_records something to find.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest

from infrastructure import environment
from infrastructure.cli import deployment, main
from infrastructure.cli.arrivals import ManifestReader
from infrastructure.cli.deployment import Deployment
from infrastructure.local.stack.local_stack import LocalStack, StackOptions
from infrastructure.payload_tables import payload_tables
from infrastructure.query.queries import named_queries
from infrastructure.tunables import load_tunables
from tests.integration.runtime_support import wait_until

pytestmark = pytest.mark.slow

TIME_SCALE: Final = 20.0
WAIT_SECONDS: Final = 240.0
RUN: Final = "q17"


def csv_body(*rows: str) -> bytes:
    return ("\ufeff" + "meter_id,read_at,kwh,estimated,note\r\n" + "".join(rows)).encode()


def profile(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "customer_id": f"C-{n}",
        "name": f"Customer {n}",
        "email": None if n % 2 else f"c{n}@example.com",
        "balance_pence": n * 100,
        "updated_at": 1_765_094_400_000 + n,
        "tags": ["vip"] if n % 3 else [],
        "address": {"line1": f"{n} High St", "city": "Leeds", "postcode": "LS1 1AA"}
        if n % 2
        else None,
        **overrides,
    }


def order(n: int) -> bytes:
    return json.dumps({"order_id": f"O-{n}", "amount_pence": n, "currency": "GBP"}).encode()


BIG_PROFILES: Final = 400
LANDED: Final = {
    f"orders/{RUN}/1.ndjson": b"\n".join(order(n) for n in (1, 2)) + b"\n",
    f"orders/{RUN}/2.ndjson": b"\n".join(order(n) for n in (3, 4, 5)) + b"\n",
    f"readings/{RUN}/clean.csv": csv_body(
        'M-1,2026-12-07T08:00:00Z,1.5,true,"read twice\r\nthen agreed"\r\n',
        "M-2,1765094400000,2.25,,\r\n",
        '"M-3","2026-12-07T09:00:00+00:00"," 3 ",false,"said ""hello"", left"\r\n',
        "M-4,2026-12-07T10:00:00Z,0,1,\r\n",
    ),
    f"readings/{RUN}/bad-row.csv": csv_body(
        "M-5,2026-12-07T08:00:00Z,1,,\r\n",
        "M-6,2026-12-07T08:30:00Z,lots,,\r\n",
        "M-7,2026-12-07T09:00:00Z,2,,\r\n",
    ),
    f"profiles/{RUN}/one.json": json.dumps(profile(1)).encode(),
    f"profiles/{RUN}/many.json": json.dumps([profile(n) for n in (2, 3, 4)]).encode(),
    f"profiles/{RUN}/mixed.json": json.dumps(
        [profile(5), profile(6, balance_pence="lots")]
    ).encode(),
    f"profiles/{RUN}/big.json": json.dumps([profile(n) for n in range(BIG_PROFILES)]).encode(),
    f"load/{RUN}/notes.txt": b"no payload type",
    f"load/{RUN}/blob.bin": bytes(range(256)),
}
QUARANTINED: Final = {f"orders/{RUN}/bad.ndjson": order(6) + b"\n{not json\n"}
DUPLICATED: Final = f"load/{RUN}/notes.txt"
TRACED: Final = f"profiles/{RUN}/big.json"
ROWS: Final = {
    # table: (rows, invalid rows, files)
    "orders": (5, 0, 2),
    "meter_readings": (7, 1, 2),
    "customer_profiles": (1 + 3 + 2 + BIG_PROFILES, 1, 4),
}
INVALID: Final = {
    "orders": [],
    "meter_readings": [(f"readings/{RUN}/bad-row.csv", 2)],
    "customer_profiles": [(f"profiles/{RUN}/mixed.json", 2)],
}


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    monkeypatch.setenv(environment.ROOT, str(tmp_path))
    started = LocalStack(StackOptions(root=tmp_path, time_scale=TIME_SCALE)).start()
    try:
        yield started
    finally:
        started.stop(flush=False)


def objects(target: Deployment, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every staging object under `prefix`, read directly: key -> its JSON lines."""
    s3 = target.client("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=target.staging_bucket, Prefix=prefix
    ):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=target.staging_bucket, Key=item["Key"])["Body"].read()
            lines = gzip.decompress(body).decode().splitlines()
            found[item["Key"]] = [json.loads(line) for line in lines if line.strip()]
    return found


def partition(key: str) -> tuple[str, str]:
    """(dt, hour) of a staged object's key."""
    parts = dict(p.split("=", 1) for p in key.split("/") if "=" in p)
    return parts["dt"], parts.get("hour", "")


def query(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    status = main.main(["query", *argv, "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    rows: list[dict[str, Any]] = json.loads(captured.out)
    return rows


def test_every_named_query_answers_what_was_landed(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the stack, and the known workload landed in it
    assert stack.file is not None
    target = deployment.from_stack(stack.file)
    s3 = target.client("s3")
    for key, body in {**LANDED, **QUARANTINED}.items():
        s3.put_object(Bucket=target.landing_bucket, Key=key, Body=body)
    # WHEN every file is delivered (and the bad orders file quarantined, in the error output)
    reader = ManifestReader(stack.file.minio.client(), stack.file.minio.bucket)
    arrived: set[str] = set()

    def delivered() -> bool:
        arrived.update(a.key for a in reader.new_arrivals())
        return arrived >= set(LANDED) and bool(objects(target, "errors/"))

    wait_until(
        delivered,
        what="the workload in MinIO and the bad file in errors/",
        timeout=WAIT_SECONDS,
        every=0.5,
        progress=lambda: f"arrived: {sorted(arrived)}",
    )
    assert not arrived & set(QUARANTINED)
    # ... and one staged line is staged again, in its window's hour, as Firehose may
    staged = objects(target, "buffers/")
    original, line = next(
        (key, line) for key, lines in staged.items() for line in lines if line["key"] == DUPLICATED
    )
    copy = original.replace(".json.gz", "-again.json.gz")
    s3.put_object(
        Bucket=target.staging_bucket,
        Key=copy,
        Body=gzip.compress((json.dumps(line) + "\n").encode()),
    )
    staged[copy] = [line]
    types = payload_tables(load_tunables().processor.payload_schemas)
    since = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    asked: set[str] = set()

    # THEN files_per_hour counts, per hour, the files staged, the copies and the windows
    asked.add("files_per_hour")
    per_hour: dict[tuple[str, str], list[str]] = defaultdict(list)
    windows: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, lines in staged.items():
        per_hour[partition(key)] += [line["file_id"] for line in lines]
        windows[partition(key)].add(key)
    assert query(capsys, "files_per_hour") == [
        {
            "dt": dt,
            "hour": hour,
            "files": len(set(ids)),
            "duplicate_records": len(ids) - len(set(ids)),
            "windows": len(windows[dt, hour]),
        }
        for (dt, hour), ids in sorted(per_hour.items())
    ]
    # (every file delivered was staged; the quarantined one is in the error output instead)
    assert {line["key"] for lines in staged.values() for line in lines} == set(LANDED)
    # ... duplicate_records finds the line staged twice
    asked.add("duplicate_records")
    (twice,) = query(capsys, "duplicate_records")
    assert (twice["file_id"], twice["copies"], twice["windows"]) == (line["file_id"], 2, 2)
    assert twice["first_dt"] == twice["last_dt"] == partition(original)[0]
    # ... errors_by_code counts the error output's records
    asked.add("errors_by_code")
    errors = objects(target, "errors/")
    codes = [(partition(key)[0], e["errorCode"]) for key, lines in errors.items() for e in lines]
    by_code = query(capsys, "errors_by_code")
    assert sorted((r["dt"], r["errorcode"], r["records"]) for r in by_code) == sorted(
        (dt, code, codes.count((dt, code))) for dt, code in set(codes)
    )
    assert "Lambda.ProcessingFailed" in {code for _, code in codes}
    # ... trace_file finds the traced file in the window the ledger says owns it
    asked.add("trace_file")
    (traced,) = query(capsys, "trace_file", TRACED, since)
    main.main(["trace", f"s3://{target.landing_bucket}/{TRACED}", "--json"])
    (story,) = json.loads(capsys.readouterr().out)
    assert traced["window_id"] == story["owner_window"]
    assert (
        traced["staged_object"] == f"s3://{target.staging_bucket}/{story['window']['staged_key']}"
    )
    assert traced["body_encoding"] == "ref"
    # ... and each payload table holds the rows of its files, the invalid ones named
    envelopes = {line["key"]: (key, line) for key, lines in staged.items() for line in lines}
    prefixes = {t.name: t.prefix for t in types}
    for table, prefix in prefixes.items():
        asked.add(f"{table}_rows_per_hour")
        hours = query(capsys, f"{table}_rows_per_hour")
        rows, invalid, files = ROWS[table]
        assert sum(h["rows"] for h in hours) == rows, table
        assert sum(h["invalid_rows"] for h in hours) == invalid, table
        assert sum(h["valid_rows"] for h in hours) == rows - invalid, table
        assert sum(h["files"] for h in hours) == files, table
        asked.add(f"{table}_invalid_rows")
        found = query(capsys, f"{table}_invalid_rows", since)
        assert [(r["key"], r["record_number"]) for r in found] == INVALID[table]
        assert all(r["error"] for r in found)
        # ... late rows: files whose S3 event is in an earlier hour than their window's
        asked.add(f"{table}_late_rows")
        late = {r["key"] for r in query(capsys, f"{table}_late_rows", since)}
        assert late == {
            key
            for key, (window, line) in envelopes.items()
            if key.startswith(prefix) and late_hour(line["event_time_ms"], window)
        }, table
    # ... and any named query added since runs too
    for extra in named_queries(list(prefixes)):
        if extra.name not in asked:
            query(capsys, extra.name, *[since for _ in extra.parameters])


def late_hour(event_time_ms: int, window: str) -> bool:
    """Whether a file's S3 event is in an earlier hour than the window that staged it."""
    event = datetime.fromtimestamp(event_time_ms / 1000, UTC)
    return f"{event:%Y-%m-%d %H}" < " ".join(partition(window))
