"""`sluice capacity --rate R --size S`: what a deployment needs at a rate, from the sizing math
(infrastructure/sizing.py) and, when `make bench` has run, its measured costs (build/bench.json).

For one steady rate and average file size it prints: each Firehose stream's share of its
quotas and the streams needed (records inline up to the tunables' inline limit, else by
reference), Lambda concurrency per function, the backlog a burst leaves and how long it takes
to drain, storage growth (landing, staging, MinIO) and a monthly cost for each landing archive
mode (deep_archive, expire), naming every assumption — prices, and measured or default costs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from infrastructure import sizing
from infrastructure.sizing import GB, KIB, MIB
from infrastructure.tunables import Tunables, load_tunables

BENCH_JSON: Final = Path("build/bench.json")
DEFAULT_BURST_RATE: Final = 100.0  # seed 003 NFR-05
DEFAULT_BURST_SECONDS: Final = 120.0
SLO_P95_S: Final = 120.0


@dataclass(frozen=True)
class Cost:
    """A per-unit cost, and where it came from."""

    value: float
    source: str
    """`build/bench.json: <figure>` or `default (no build/bench.json figure)`."""


# bench.json figure names (`make bench`), best first, and the defaults used without them.
DELIVERY_BYTES: Final = ("delivery_mb_per_s_100k", "sluice_delivery_mb_per_s_peer_input")
DELIVERY_FILES: Final = ("delivery_files_per_s_1k",)
FORWARDER_BATCH: Final = ("forwarder_batch10_ms",)
DEFAULT_DELIVERY_MB_S: Final = 20.0
DEFAULT_DELIVERY_FILES_S: Final = 500.0
DEFAULT_FORWARDER_BATCH_MS: Final = 500.0


def read_bench(path: Path) -> dict[str, float]:
    """Figure name -> value from a bench.json; empty when absent or unreadable (defaults then)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        name: float(entry["value"])
        for name, entry in document.items()
        if isinstance(entry, dict) and isinstance(entry.get("value"), int | float)
    }


def measured(bench: dict[str, float], names: tuple[str, ...], default: float) -> Cost:
    for name in names:
        value = bench.get(name)
        if value is not None and math.isfinite(value) and value > 0:
            return Cost(value, f"{BENCH_JSON}: {name}")
    return Cost(default, f"default (no {' or '.join(names)} in {BENCH_JSON})")


@dataclass(frozen=True)
class Inputs:
    rate: float
    size: int
    burst_rate: float
    burst_seconds: float
    streams: int
    binary: bool
    hot_days: int
    expire_days: int


def estimate(
    inputs: Inputs, tunables: Tunables, bench: dict[str, float], prices: dict[str, float]
) -> dict[str, Any]:
    """Everything `sluice capacity` reports, as one JSON-ready document."""
    t = tunables
    inline = inputs.size <= t.forwarder.inline_limit_bytes
    record = sizing.record_bytes(inputs.size, t.forwarder.inline_limit_bytes, binary=inputs.binary)
    batch = t.ingest.batch_size
    buffer_s = t.firehose.destination_buffer_seconds
    delivery_mb = measured(bench, DELIVERY_BYTES, DEFAULT_DELIVERY_MB_S)
    delivery_files = measured(bench, DELIVERY_FILES, DEFAULT_DELIVERY_FILES_S)
    forwarder_ms = measured(bench, FORWARDER_BATCH, DEFAULT_FORWARDER_BATCH_MS)
    batch_s = forwarder_ms.value / 1000

    def firehose(rate: float) -> dict[str, Any]:
        load = sizing.firehose_load(rate, record, inputs.streams, batch)
        return {**asdict(load), "binding_share": load.binding_share}

    def delivery(rate: float) -> dict[str, Any]:
        load = sizing.delivery_load(
            rate,
            inputs.size,
            inputs.streams,
            buffer_s,
            bytes_per_s=delivery_mb.value * 1e6,
            seconds_per_file=1 / delivery_files.value,
        )
        latency = t.firehose.processor_buffer_seconds + buffer_s + load.seconds_per_window
        return {**asdict(load), "window_last_file_latency_s": latency}

    def forwarder(rate: float) -> dict[str, Any]:
        batches = rate / batch
        return {
            "batches_per_s": batches,
            "concurrency": sizing.concurrency(batches, batch_s),
            "mapping_cap": t.ingest.maximum_concurrency,
        }

    # Throttling starts at 100 % of the quota (the alarm at 80 %): beyond it, records wait.
    firehose_cap = inputs.streams * sizing.FIREHOSE_QUOTA_BYTES / record
    forwarder_cap = t.ingest.maximum_concurrency * batch / batch_s
    capacity = min(firehose_cap, forwarder_cap)
    bottleneck = "Firehose quota" if firehose_cap <= forwarder_cap else "forwarder mapping cap"
    burst = sizing.backlog(inputs.rate, inputs.burst_rate, inputs.burst_seconds, capacity)
    grow = sizing.storage_per_day(inputs.rate, inputs.size, record)
    costs = sizing.monthly_costs(
        inputs.rate, inputs.size, inputs.hot_days, inputs.expire_days, prices, record=record
    )
    return {
        "inputs": {
            **asdict(inputs),
            "inline_limit_bytes": t.forwarder.inline_limit_bytes,
            "carried": "inline" if inline else "ref",
            "record_bytes": record,
            "buffer_seconds": buffer_s,
            "processor_buffer_seconds": t.firehose.processor_buffer_seconds,
        },
        "assumed": {
            "delivery_mb_per_s": asdict(delivery_mb),
            "delivery_files_per_s": asdict(delivery_files),
            "forwarder_batch_ms": asdict(forwarder_ms),
            "firehose_quota_bytes_per_s": sizing.FIREHOSE_QUOTA_BYTES,
            "alarm_share": sizing.ALARM_SHARE,
        },
        "firehose": {"baseline": firehose(inputs.rate), "burst": firehose(inputs.burst_rate)},
        "lambda": {
            "forwarder": {
                "baseline": forwarder(inputs.rate),
                "burst": forwarder(inputs.burst_rate),
            },
            "delivery": {"baseline": delivery(inputs.rate), "burst": delivery(inputs.burst_rate)},
        },
        "backlog": {
            "capacity_files_per_s": capacity,
            "bottleneck": bottleneck,
            "peak_files": burst.peak_files,
            "drain_seconds": None if math.isinf(burst.drain_seconds) else burst.drain_seconds,
        },
        "storage_bytes": {
            "per_day": asdict(grow),
            "per_month": {k: v * sizing.DAYS_PER_MONTH for k, v in asdict(grow).items()},
        },
        "costs": {
            "prices": prices,
            "items": asdict(costs),
            "deep_archive": {
                "first_month": costs.deep_archive_month + costs.transfer,
                "added_each_month_kept": costs.added,
            },
            "expire": {"monthly": costs.expire_month + costs.transfer},
        },
    }


def text(doc: dict[str, Any]) -> str:
    i, a, c = doc["inputs"], doc["assumed"], doc["costs"]
    items = c["items"]
    fh, fw, dl = doc["firehose"], doc["lambda"]["forwarder"], doc["lambda"]["delivery"]
    bl, st = doc["backlog"], doc["storage_bytes"]
    carried = (
        f"inline ({'base64' if i['binary'] else 'utf8'}, {i['record_bytes']:,} B records)"
        if i["carried"] == "inline"
        else f"by reference ({i['record_bytes']} B records)"
    )
    lines = [
        f"sluice capacity: {i['rate']:g} files/s of {_bytes(i['size'])} ({carried}; inline limit "
        f"{_bytes(i['inline_limit_bytes'])}), {i['streams']} Firehose streams, bursts of "
        f"{i['burst_rate']:g} files/s for {i['burst_seconds']:g} s",
        "Firehose, per stream (quota 1 MiB/s, 1,000 requests/s, 100k records/s):",
    ]
    for label, load in (("baseline", fh["baseline"]), ("burst", fh["burst"])):
        lines.append(
            f"  {label:8} {load['bytes_per_stream'] / MIB:.3f} MiB/s = "
            f"{100 * load['quota_share']:.1f} % of the bytes quota "
            f"({_headroom(load['binding_share'])}); streams needed for the "
            f"{a['alarm_share']:.0%} alarm: {load['streams_needed']}"
        )
    lines.append("Lambda concurrency (Little's law: invocations/s x seconds each):")
    for label in ("baseline", "burst"):
        f, d = fw[label], dl[label]
        lines.append(
            f"  {label:8} forwarder {f['concurrency']:.1f} ({f['batches_per_s']:g} batches/s; "
            f"mapping cap {f['mapping_cap']}); delivery {d['concurrency']:.2f} "
            f"({_bytes(d['window_file_bytes'])} a window per stream, "
            f"{d['seconds_per_window']:.1f} s each; a window's last file ~"
            f"{d['window_last_file_latency_s']:.0f} s after landing vs p95 {SLO_P95_S:g} s)"
        )
    drain = (
        "no backlog: the burst is within capacity"
        if bl["peak_files"] == 0
        else f"backlog {bl['peak_files']:,.0f} files at the burst's end, "
        + (
            "never drained: the baseline alone exceeds capacity"
            if bl["drain_seconds"] is None
            else f"drained {bl['drain_seconds']:,.0f} s after it"
        )
    )
    lines.append(
        f"Burst: capacity {bl['capacity_files_per_s']:,.0f} files/s ({bl['bottleneck']}); {drain}"
    )
    day, month = st["per_day"], st["per_month"]
    lines.append(
        "Storage growth per day / month: "
        + "; ".join(
            f"{name} {_bytes(day[name])} / {_bytes(month[name])}"
            for name in ("landing", "staging", "minio")
        )
        + " (staging before gzip; MinIO with no credit for gzip)"
    )
    lines += [
        f"Monthly cost (files {items['files'] / 1e6:.1f} M, data "
        f"{items['data_bytes'] / GB:,.0f} GB; PUTs ${items['puts']:,.0f}, Firehose "
        f"${items['firehose']:,.0f}, transfer to MinIO ${items['transfer']:,.0f} in both modes):",
        f"  deep_archive: ${c['deep_archive']['first_month']:,.0f} the first month (transitions "
        f"${items['transitions']:,.0f}, {i['hot_days']} days hot ${items['hot']:,.0f}); each "
        "month kept "
        f"adds ${c['deep_archive']['added_each_month_kept']:,.0f} a month; 180-day minimum",
        f"  expire ({i['expire_days']} days): ${c['expire']['monthly']:,.0f} a month "
        f"(storage ${items['expire']:,.0f}); MinIO holds the copy",
        "Assumed: "
        + "; ".join(
            f"{name} {cost['value']:g} ({cost['source']})"
            for name, cost in (
                ("delivery MB/s", a["delivery_mb_per_s"]),
                ("delivery files/s", a["delivery_files_per_s"]),
                ("forwarder ms per batch", a["forwarder_batch_ms"]),
            )
        ),
        "Prices (us-east-1 list; --price NAME=VALUE): "
        + ", ".join(f"{k} {v:g}" for k, v in c["prices"].items())
        + ". Not included: Lambda, SQS, DynamoDB, KMS, CloudWatch.",
    ]
    return "\n".join(lines)


def _headroom(share: float) -> str:
    if share > 1:
        return "over the quota: throttled, records wait"
    return f"headroom {100 * (1 - share):.0f} %"


def _bytes(value: float) -> str:
    """Binary units for sizes that are whole KiB/MiB (the tunables' limits), else decimal."""
    for unit, binary in (("MiB", MIB), ("KiB", KIB)):
        if binary <= value < 1024 * binary and value % binary == 0:
            return f"{value / binary:g} {unit}"
    for unit, decimal in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= decimal:
            return f"{value / decimal:,.1f} {unit}"
    return f"{value:,.0f} B"


# ------------------------------------------------------------------ command


def size_argument(value: str) -> int:
    try:
        return sizing.parse_size(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
    return number


def register(commands: Any) -> None:
    command = commands.add_parser(
        "capacity",
        help="what a rate and file size need: Firehose streams, Lambda concurrency, backlog, "
        "storage, monthly cost",
        description="Sizing from the math in infrastructure/sizing.py and the costs `make bench` "
        f"measured ({BENCH_JSON}; defaults, named, without it): Firehose quota headroom per "
        "stream and streams needed, Lambda concurrency per function, the backlog a burst "
        "leaves and its drain time, storage growth, and a monthly cost per landing archive mode.",
    )
    command.add_argument("--rate", type=positive, required=True, help="files per second")
    command.add_argument(
        "--size", type=size_argument, required=True, help="average file size: 100KB, 64KiB, 1MB"
    )
    command.add_argument(
        "--burst-rate",
        type=positive,
        default=DEFAULT_BURST_RATE,
        help=f"files per second in a burst ({DEFAULT_BURST_RATE:g}, the seed's)",
    )
    command.add_argument(
        "--burst-seconds",
        type=positive,
        default=DEFAULT_BURST_SECONDS,
        help=f"how long a burst lasts ({DEFAULT_BURST_SECONDS:g})",
    )
    command.add_argument(
        "--streams", type=int, default=None, help="Firehose streams (default: tunables.json)"
    )
    command.add_argument(
        "--text-bodies",
        action="store_true",
        help="inline bodies are utf8 text (default: binary, base64 — the worst case)",
    )
    command.add_argument("--hot-days", type=int, default=7, help="deep_archive: days at Standard")
    command.add_argument("--expire-days", type=int, default=15, help="expire: days kept (15)")
    command.add_argument("--price", action="append", default=[], metavar="NAME=VALUE")
    command.add_argument(
        "--bench", type=Path, default=None, help=f"measured costs (default <root>/{BENCH_JSON})"
    )
    command.add_argument("--json", action="store_true", help="one JSON object instead of text")
    command.set_defaults(run=run)


def run(args: argparse.Namespace, root: Path) -> int:
    prices = dict(sizing.PRICES)
    try:
        sizing.set_prices(prices, args.price)
    except ValueError as err:
        print(f"sluice capacity: {err}", file=sys.stderr)
        return 2
    tunables = load_tunables()
    streams = tunables.firehose.stream_count if args.streams is None else args.streams
    if streams < 1:
        print(f"sluice capacity: --streams must be at least 1, not {streams}", file=sys.stderr)
        return 2
    inputs = Inputs(
        rate=args.rate,
        size=args.size,
        burst_rate=args.burst_rate,
        burst_seconds=args.burst_seconds,
        streams=streams,
        binary=not args.text_bodies,
        hot_days=args.hot_days,
        expire_days=args.expire_days,
    )
    bench = read_bench(args.bench or root / BENCH_JSON)
    doc = estimate(inputs, tunables, bench, prices)
    print(json.dumps(doc, indent=1) if args.json else text(doc))
    return 0
