"""Files the way third parties drop them: a reproducible mix for `sluice load` and the tests.

The mix (by count): JSON documents of 0.5-4 KiB (40%), CSV extracts of 2-24 KiB (25%), order
batches as NDJSON under `orders/` that the payload schema accepts (15%), binary blobs of
1-96 KiB (18%; those over the forwarder's 64 KiB inline limit travel by reference) and large
binaries of 1-6 MiB (2%, always by reference). Keys are awkward on purpose: spaces, `+`, `%`,
`#`, unicode, deep paths — what S3 URL-encodes in its events and producers really send.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB
PRODUCERS: Final = ("acme", "globex", "initech", "umbrella corp", "żółć-ltd")
KINDS: Final = (("json", 40), ("csv", 25), ("orders", 15), ("binary", 18), ("large", 2))
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
    """An endless, reproducible sequence of files under `load/<run_id>/` (and `orders/`)."""
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
