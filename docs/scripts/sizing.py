"""Sizing math for a deployment: Firehose quota per stream, Lambda concurrency, and the monthly
cost of each landing archive mode. Run: `.venv/bin/python docs/scripts/sizing.py`.

Computed, not measured: rates and sizes are the seed's (10 files/s baseline, 100 files/s bursts,
100 KB average file), settings come from infrastructure/tunables.json, and prices are the
inputs below — AWS list prices for us-east-1 at the time of writing (eu-west-2 is a little
higher); change them, or pass `--price NAME=VALUE`, before quoting a bill.
"""

from __future__ import annotations

import argparse
import math

from infrastructure.tunables import parse_tunables, read_tunables_document
from transform.envelope import Envelope

KB = 1000
KIB = 1024
MIB = 1024 * KIB
GB = 1000**3
TB = 1000**4
SECONDS_PER_MONTH = 30.42 * 86_400

PRICES = {
    "s3_standard_gb_month": 0.023,
    "s3_deep_archive_gb_month": 0.00099,
    "s3_transition_deep_archive_per_1000": 0.05,  # DESIGN §7
    "s3_put_per_1000": 0.005,
    "firehose_ingest_gb": 0.029,  # billed in 5 KB increments per record
}
DEEP_ARCHIVE_OVERHEAD_STANDARD = 8 * KIB  # per object, billed at Standard
DEEP_ARCHIVE_OVERHEAD_ARCHIVE = 32 * KIB  # per object, billed at Deep Archive
FIREHOSE_RECORD_ROUNDING = 5 * KB
FIREHOSE_QUOTA_BYTES = 1 * MIB  # per stream outside us-east-1, us-west-2, eu-west-1 (DESIGN §5)
ALARM_SHARE = 0.8  # the incoming-bytes alarm's threshold


def ref_record_bytes() -> int:
    """A Firehose record by reference, as the forwarder encodes it, with realistic fields."""
    return len(
        Envelope.ref(
            file_id="f" * 64,
            bucket="sluice-prod-landing",
            key="acme/2026/11/25/orders-export-000123.json",
            version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nrjfkd",
            size=100_000,
            event_time_ms=1_795_600_000_000,
            forwarded_at_ms=1_795_600_000_900,
            sequencer="0055AED6DCD90281E5",
            etag="d41d8cd98f00b204e9800998ecf8427e",
        ).encode()
    )


def firehose(rate: float, streams: int, inline_limit: int) -> list[str]:
    """Bytes per stream in the worst case (every file binary and just under the inline limit,
    so base64 in its envelope) and with 100 KB files (over the limit: by reference)."""
    ref = ref_record_bytes()
    worst = math.ceil(inline_limit / 3) * 4 + ref
    lines = []
    for label, record in (
        ("worst case (64 KiB base64)", worst),
        (f"100 KB files ({ref} B refs)", ref),
    ):
        per_stream = rate * record / streams
        needed = math.ceil(rate * record / (FIREHOSE_QUOTA_BYTES * ALARM_SHARE))
        lines.append(
            f"  {label:28} {per_stream / MIB:6.2f} MiB/s per stream = "
            f"{100 * per_stream / FIREHOSE_QUOTA_BYTES:5.1f} % of the quota; "
            f"streams to stay under the {ALARM_SHARE:.0%} alarm: {needed}"
        )
    return lines


def monthly_costs(rate: float, file_bytes: float, hot_days: int, expire_days: int) -> list[str]:
    p = PRICES
    files = rate * SECONDS_PER_MONTH
    data = files * file_bytes
    transitions = files / 1000 * p["s3_transition_deep_archive_per_1000"]
    hot = rate * 86_400 * hot_days * file_bytes / GB * p["s3_standard_gb_month"]
    archive_added = (
        (data + files * DEEP_ARCHIVE_OVERHEAD_ARCHIVE) / GB * p["s3_deep_archive_gb_month"]
    )
    overhead_added = files * DEEP_ARCHIVE_OVERHEAD_STANDARD / GB * p["s3_standard_gb_month"]
    puts = files / 1000 * p["s3_put_per_1000"]
    expire = rate * 86_400 * expire_days * file_bytes / GB * p["s3_standard_gb_month"]
    added = archive_added + overhead_added
    return [
        f"  files a month {files / 1e6:.1f} M, data {data / TB:.2f} TB; "
        f"PUTs ${puts:,.0f} in both modes",
        f"  deep_archive: transitions ${transitions:,.0f} + hot {hot_days} days ${hot:,.0f} "
        f"a month, and each month kept adds ${added:,.0f} a month (Deep Archive "
        f"${archive_added:,.0f}, 8 KiB/object at Standard ${overhead_added:,.0f}); "
        "180-day minimum",
        f"  expire ({expire_days} days): ${expire:,.0f} a month, no transitions; "
        "MinIO holds the copy",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-kb", type=float, default=100.0, help="average file size (100)")
    parser.add_argument("--hot-days", type=int, default=7, help="deep_archive: days at Standard")
    parser.add_argument("--expire-days", type=int, default=15, help="expire: days kept")
    parser.add_argument("--price", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    for item in args.price:
        name, _, value = item.partition("=")
        if name not in PRICES:
            parser.error(f"unknown price {name!r}; one of {sorted(PRICES)}")
        PRICES[name] = float(value)
    tunables = parse_tunables(read_tunables_document())
    streams = tunables.firehose.stream_count
    ingest = tunables.ingest
    for rate in (10.0, 100.0):
        sustained = " (costs: as if sustained for a month)" if rate > 10 else ""
        print(f"{rate:g} files/s, {streams} streams (tunables.json){sustained}:")
        print("\n".join(firehose(rate, streams, tunables.forwarder.inline_limit_bytes)))
        batches = rate / ingest.batch_size
        print(
            f"  forwarder: {batches:g} batches/s of {ingest.batch_size}; if a batch takes 0.5 s, "
            f"{math.ceil(batches * 0.5)} concurrent (mapping cap {ingest.maximum_concurrency}); "
            f"delivery: one invocation per stream per "
            f"{tunables.firehose.destination_buffer_seconds} s window"
        )
        print("\n".join(monthly_costs(rate, args.file_kb * KB, args.hot_days, args.expire_days)))
        records = rate * SECONDS_PER_MONTH
        firehose_cost = records * FIREHOSE_RECORD_ROUNDING / GB * PRICES["firehose_ingest_gb"]
        print(f"  Firehose ingestion (refs, 5 KB minimum a record): ${firehose_cost:,.0f} a month")


if __name__ == "__main__":
    main()
