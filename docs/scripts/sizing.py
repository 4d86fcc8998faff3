"""Sizing math for a deployment: Firehose quota per stream, Lambda concurrency, and the monthly
cost of each landing archive mode. Run: `.venv/bin/python docs/scripts/sizing.py`.

Computed, not measured: rates and sizes are the seed's (10 files/s baseline, 100 files/s bursts,
100 KB average file), settings come from infrastructure/tunables.json, and prices are the
inputs in infrastructure/sizing.py — AWS list prices for us-east-1 at the time of writing
(eu-west-2 is a little higher); change them, or pass `--price NAME=VALUE`, before quoting a
bill. The math is infrastructure/sizing.py's, shared with `sluice capacity`.
"""

from __future__ import annotations

import argparse
import math

from infrastructure import sizing
from infrastructure.sizing import ALARM_SHARE, KB, MIB, TB
from infrastructure.tunables import parse_tunables, read_tunables_document


def firehose(rate: float, streams: int, inline_limit: int) -> list[str]:
    """Bytes per stream in the worst case (every file binary and just under the inline limit,
    so base64 in its envelope) and with 100 KB files (over the limit: by reference)."""
    ref = sizing.ref_record_bytes()
    lines = []
    for label, record in (
        ("worst case (64 KiB base64)", sizing.inline_record_bytes(inline_limit)),
        (f"100 KB files ({ref} B refs)", ref),
    ):
        load = sizing.firehose_load(rate, record, streams)
        lines.append(
            f"  {label:28} {load.bytes_per_stream / MIB:6.2f} MiB/s per stream = "
            f"{100 * load.quota_share:5.1f} % of the quota; "
            f"streams to stay under the {ALARM_SHARE:.0%} alarm: {load.streams_needed}"
        )
    return lines


def monthly_costs(
    rate: float, file_bytes: float, hot_days: int, expire_days: int, prices: dict[str, float]
) -> list[str]:
    c = sizing.monthly_costs(rate, file_bytes, hot_days, expire_days, prices)
    return [
        f"  files a month {c.files / 1e6:.1f} M, data {c.data_bytes / TB:.2f} TB; "
        f"PUTs ${c.puts:,.0f} in both modes",
        f"  deep_archive: transitions ${c.transitions:,.0f} + hot {hot_days} days ${c.hot:,.0f} "
        f"a month, and each month kept adds ${c.added:,.0f} a month (Deep Archive "
        f"${c.archive_added:,.0f}, 8 KiB/object at Standard ${c.overhead_added:,.0f}); "
        "180-day minimum",
        f"  expire ({expire_days} days): ${c.expire:,.0f} a month, no transitions; "
        "MinIO holds the copy",
        f"  Firehose ingestion (refs, 5 KB minimum a record): ${c.firehose:,.0f} a month",
        f"  tags on files read by reference (the lifecycle moves or expires them only once "
        f"delivered): ${c.delivered_tags:,.0f} a month; each day of a MinIO outage holds a "
        f"day's files at Standard: ${c.outage_day:,.2f} per day they wait",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--file-kb", type=float, default=100.0, help="average file size (100)")
    parser.add_argument("--hot-days", type=int, default=7, help="deep_archive: days at Standard")
    parser.add_argument("--expire-days", type=int, default=15, help="expire: days kept")
    parser.add_argument("--price", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    prices = dict(sizing.PRICES)
    try:
        sizing.set_prices(prices, args.price)
    except ValueError as err:
        parser.error(str(err))
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
            f"{math.ceil(sizing.concurrency(batches, 0.5))} concurrent "
            f"(mapping cap {ingest.maximum_concurrency}); "
            f"delivery: one invocation per stream per "
            f"{tunables.firehose.destination_buffer_seconds} s window"
        )
        file_bytes = args.file_kb * KB
        print("\n".join(monthly_costs(rate, file_bytes, args.hot_days, args.expire_days, prices)))


if __name__ == "__main__":
    main()
