"""The file mix of `sluice load` (infrastructure.cli.workload)."""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter
from datetime import datetime

from infrastructure.cli import workload
from infrastructure.tunables import load_tunables
from transform import payload_schemas


def take(count: int, seed: int = 0) -> list[workload.WorkloadFile]:
    return list(itertools.islice(workload.files("run-1", seed), count))


def test_the_mix_is_reproducible_and_keys_are_unique() -> None:
    first, again = take(300), take(300)
    assert [(f.key, f.sha256) for f in first] == [(f.key, f.sha256) for f in again]
    assert len({f.key for f in first}) == 300
    assert [f.key for f in take(50, seed=1)] != [f.key for f in first[:50]]


def test_every_kind_appears_in_roughly_its_share() -> None:
    kinds = Counter(f.kind for f in take(2_000))
    shares = dict(workload.KINDS)
    for kind, weight in shares.items():
        assert abs(kinds[kind] / 2_000 - weight / 100) < 0.04, (kind, kinds[kind])


def test_both_forwarding_paths_are_exercised() -> None:
    """Large files always, and binaries sometimes, exceed the forwarder's inline limit (they
    travel by reference); text files stay inline."""
    limit = load_tunables().forwarder.inline_limit_bytes
    files = take(400)
    for file in files:
        if file.kind == "large":
            assert len(file.body) > limit, file.key
        elif file.kind != "binary":
            assert len(file.body) <= limit, file.key
    binaries = [len(f.body) > limit for f in files if f.kind == "binary"]
    assert any(binaries)
    assert not all(binaries)


def test_orders_pass_the_payload_schema_and_keys_are_awkward() -> None:
    files = take(400)
    schemas = payload_schemas.load(load_tunables().processor.payload_schemas)
    orders = [f for f in files if f.kind == "orders"]
    assert orders
    for file in orders:
        rule = schemas.for_key(file.key)
        assert rule is not None, file.key
        rule.check(file.body)  # raises PayloadSchemaError on a bad order
    others = [f.key for f in files if f.kind != "orders"]
    assert any(" " in key for key in others)
    assert any("+" in key or "%" in key or "#" in key for key in others)
    assert any(not key.isascii() for key in others)


def test_readings_and_profiles_are_valid_records_of_their_payload_types() -> None:
    # GIVEN the schemas of the payload types, by prefix
    rules = {
        r.prefix: r for r in payload_schemas.load(load_tunables().processor.payload_schemas).rules
    }
    # WHEN the mix makes files of every kind
    files = take(600)
    readings = [f for f in files if f.kind == "readings"]
    profiles = [f for f in files if f.kind == "profiles"]
    # THEN each payload kind lands under its type's prefix ...
    assert readings
    assert profiles
    for file in files:
        prefix = workload.PAYLOAD_KINDS.get(file.kind)
        assert (prefix is not None) == any(file.key.startswith(p) for p in rules), file.key
        assert prefix is None or file.key.startswith(prefix), file.key
    # ... every CSV row, its header mapped to the schema's fields, is a valid meter reading
    schema = rules["readings/"]
    rows = 0
    for file in readings:
        text = file.body.decode("utf-8")
        assert text.endswith("\r\n")
        table = list(csv.DictReader(io.StringIO(text, newline="")))
        assert list(table[0]) == [f["name"] for f in schema.parsed["fields"]]
        for row in table:
            schema.check_parsed(reading(row), where=f"{file.key} row")
            rows += 1
    assert rows > len(readings)
    # ... and every profile file is one valid profile or an array of them
    for file in profiles:
        rules["profiles/"].check(file.body)
    assert any(file.body.startswith(b"[") for file in profiles)
    assert any(file.body.startswith(b"{") for file in profiles)


def reading(row: dict[str, str]) -> dict[str, object]:
    """A CSV row as the record its cells stand for: ISO 8601 time as epoch ms, empty as null."""
    read_at = datetime.fromisoformat(row["read_at"])
    return {
        "meter_id": row["meter_id"],
        "read_at": int(read_at.timestamp() * 1000),
        "kwh": float(row["kwh"]),
        "estimated": {"true": True, "false": False, "": None}[row["estimated"]],
        "note": row["note"] or None,
    }
