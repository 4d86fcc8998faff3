"""Files the way third parties drop them: a reproducible mix for `sluice load` and the tests.

The mix (by count): JSON documents of 0.5-4 KiB (30%), CSV extracts of 2-24 KiB (20%), and
files of the three payload types in the tunables, valid for their schemas
(infrastructure/schemas/payloads/): order batches as NDJSON under `orders/` (15%), meter
readings as CSV under `readings/` (10%) and customer profiles as JSON under `profiles/` (7%, one
object or an array); then binary blobs of 1-96 KiB (16%; those over the forwarder's 64 KiB
inline limit travel by reference) and large binaries of 1-6 MiB (2%, always by reference). Keys
outside the payload prefixes are awkward on purpose: spaces, `+`, `%`, `#`, unicode, deep paths
— what S3 URL-encodes in its events and producers really send.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB
PRODUCERS: Final = ("acme", "globex", "initech", "umbrella corp", "żółć-ltd")
KINDS: Final = (
    ("json", 30),
    ("csv", 20),
    ("orders", 15),
    ("readings", 10),
    ("profiles", 7),
    ("binary", 16),
    ("large", 2),
)
PAYLOAD_KINDS: Final = {"orders": "orders/", "readings": "readings/", "profiles": "profiles/"}
"""The kinds whose files are payload types (tunables.json `processor.payload_schemas`), and
their prefixes: each of their records is a row of the type's table."""
EPOCH_2026: Final = 1_767_225_600_000
"""2026-01-01T00:00:00Z in epoch milliseconds: the workload's timestamps are in 2026."""
_AWKWARD: Final = ("report", "daily export", "q3+q4", "100% done", "note #7", "ünïcødé", "日本語")


@dataclass(frozen=True)
class WorkloadFile:
    key: str
    body: bytes
    kind: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def files(run_id: str, seed: int = 0) -> Iterator[WorkloadFile]:
    """An endless, reproducible sequence of files under `load/<run_id>/` and the payload
    prefixes (`orders/<run_id>/`, `readings/<run_id>/`, `profiles/<run_id>/`)."""
    rng = random.Random(seed)  # noqa: S311  # test data, not security
    kinds = [kind for kind, _ in KINDS]
    weights = [weight for _, weight in KINDS]
    number = 0
    while True:
        number += 1
        kind = rng.choices(kinds, weights)[0]
        yield _file(rng, run_id, number, kind)


def _file(rng: random.Random, run_id: str, number: int, kind: str) -> WorkloadFile:
    producer = rng.choice(PRODUCERS)
    label = rng.choice(_AWKWARD)
    stem = f"{producer}/{run_id}/{number:06d} {label}"
    if kind == "json":
        return WorkloadFile(f"load/{stem}.json", _json(rng, number), kind)
    if kind == "csv":
        return WorkloadFile(f"load/{stem}.csv", _csv(rng), kind)
    if kind == "orders":
        return WorkloadFile(f"orders/{run_id}/{number:06d}.ndjson", _orders(rng, number), kind)
    if kind == "readings":
        return WorkloadFile(f"readings/{run_id}/{number:06d}.csv", _readings(rng, number), kind)
    if kind == "profiles":
        return WorkloadFile(f"profiles/{run_id}/{number:06d}.json", _profiles(rng, number), kind)
    size = rng.randint(1 * KIB, 96 * KIB) if kind == "binary" else rng.randint(1 * MIB, 6 * MIB)
    return WorkloadFile(f"load/{stem}.bin", rng.randbytes(size), kind)


def _json(rng: random.Random, number: int) -> bytes:
    rows = [
        {"id": f"{number}-{i}", "value": rng.random(), "label": rng.choice(_AWKWARD)}
        for i in range(rng.randint(4, 40))
    ]
    return json.dumps({"file": number, "rows": rows}, ensure_ascii=False).encode()


def _csv(rng: random.Random) -> bytes:
    lines = ["sku,quantity,price,description"]
    for i in range(rng.randint(40, 480)):
        lines.append(f"SKU-{i:05d},{rng.randint(1, 99)},{rng.random() * 100:.2f},item {i}")
    return ("\n".join(lines) + "\n").encode()


def _orders(rng: random.Random, number: int) -> bytes:
    orders = [
        {
            "order_id": f"O-{number}-{i}",
            "amount_pence": rng.randint(1, 100_000),
            "currency": rng.choice(("GBP", "EUR", "USD")),
        }
        for i in range(rng.randint(1, 20))
    ]
    return b"".join(json.dumps(order).encode() + b"\n" for order in orders)


def _readings(rng: random.Random, number: int) -> bytes:
    """Meter readings (meter_reading.avsc) as CSV: ISO 8601 times, empty optional cells, a
    quoted note with a comma now and then."""
    lines = ["meter_id,read_at,kwh,estimated,note"]
    start = EPOCH_2026 + rng.randint(0, 300 * 86_400) * 1000
    for i in range(rng.randint(5, 200)):
        read_at = datetime.fromtimestamp((start + i * 1_800_000) / 1000, UTC)
        estimated = rng.choice(("true", "false", ""))
        note = rng.choice(("", "", "", "manual read", '"reset, then read"'))
        lines.append(
            f"MTR-{number}-{i % 7:02d},{read_at:%Y-%m-%dT%H:%M:%SZ},"
            f"{rng.random() * 50:.3f},{estimated},{note}"
        )
    return ("\r\n".join(lines) + "\r\n").encode()


def _profiles(rng: random.Random, number: int) -> bytes:
    """Customer profiles (customer_profile.avsc) as JSON: one object, or an array of them."""

    def profile(i: int) -> dict[str, object]:
        return {
            "customer_id": f"C-{number}-{i}",
            "name": rng.choice(("Ada", "Grace", "Alan", "Zoë", "Łukasz")) + f" {number}",
            "email": rng.choice((None, f"customer{number}.{i}@example.com")),
            "balance_pence": rng.randint(-50_000, 500_000),
            "updated_at": EPOCH_2026 + rng.randint(0, 300 * 86_400_000),
            "tags": rng.sample(("new", "vip", "dormant", "paperless"), rng.randint(0, 2)),
            "address": rng.choice(
                (None, {"line1": f"{number} High Street", "city": "Leeds", "postcode": "LS1 1AA"})
            ),
        }

    if rng.random() < 0.5:
        return json.dumps(profile(1), ensure_ascii=False).encode()
    return json.dumps(
        [profile(i) for i in range(1, rng.randint(2, 12))], ensure_ascii=False
    ).encode()
