"""Sizing math for a deployment: Firehose quota per stream, Lambda concurrency, backlog after a
burst, storage growth and monthly costs per landing archive mode.

Pure functions of their inputs — rates, sizes, tunables, prices — shared by
`docs/scripts/sizing.py` (the README's table) and `sluice capacity`. Computed, not measured:
prices are AWS list prices for us-east-1 at the time of writing (eu-west-2 is a little higher);
change them before quoting a bill.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from transform.envelope import Envelope

KB: Final = 1000
KIB: Final = 1024
MIB: Final = 1024 * KIB
GB: Final = 1000**3
TB: Final = 1000**4
SECONDS_PER_DAY: Final = 86_400
DAYS_PER_MONTH: Final = 30.42
SECONDS_PER_MONTH: Final = DAYS_PER_MONTH * SECONDS_PER_DAY

PRICES: Final[dict[str, float]] = {
    "s3_standard_gb_month": 0.023,
    "s3_deep_archive_gb_month": 0.00099,
    "s3_transition_deep_archive_per_1000": 0.05,  # DESIGN §7
    "s3_put_per_1000": 0.005,
    "firehose_ingest_gb": 0.029,  # billed in 5 KB increments per record
    "data_transfer_out_gb": 0.09,  # to an on-premise MinIO over the internet, first 10 TB
}
"""The defaults; callers copy and override them (`--price NAME=VALUE`)."""
DEEP_ARCHIVE_OVERHEAD_STANDARD: Final = 8 * KIB  # per object, billed at Standard
DEEP_ARCHIVE_OVERHEAD_ARCHIVE: Final = 32 * KIB  # per object, billed at Deep Archive
FIREHOSE_RECORD_ROUNDING: Final = 5 * KB
FIREHOSE_QUOTA_BYTES: Final = 1 * MIB  # per stream outside us-east-1, us-west-2, eu-west-1
FIREHOSE_QUOTA_REQUESTS: Final = 1_000  # PutRecordBatch calls per second per stream
FIREHOSE_QUOTA_RECORDS: Final = 100_000  # records per second per stream
ALARM_SHARE: Final = 0.8  # the incoming-bytes alarm's threshold
ARCHIVE_BYTES_PER_FILE: Final = 2 * 512 + 2 * 400
"""What a file adds to MinIO beside its bytes: a tar header and a PAX header (512 B blocks),
and its manifest entry twice (in the archive and in the window manifest), about 400 B each."""


# ------------------------------------------------------------------------------ sizes

_SIZE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": KB,
    "mb": KB**2,
    "gb": GB,
    "tb": TB,
    "kib": KIB,
    "mib": MIB,
    "gib": KIB**3,
    "tib": KIB**4,
}


def parse_size(text: str) -> int:
    """Bytes from `100KB`, `64KiB`, `1.5MB`, `512` (bytes); ValueError naming the value."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"size {text!r} is not a size: give a number and a unit, e.g. 100KB, 64KiB, 1MB "
            "(KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024; no unit means bytes)"
        )
    number, unit = match.groups()
    size = float(number) * _UNITS[(unit or "").lower()]
    if size < 1:
        raise ValueError(f"size {text!r} must be at least 1 byte")
    return math.ceil(size)


# ------------------------------------------------------------------------------ Firehose


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


def inline_record_bytes(file_bytes: int, *, binary: bool = True) -> int:
    """A record carrying the body: base64 for a binary body (the worst case), else utf8 text
    (JSON escaping aside), plus the reference's fields."""
    body = math.ceil(file_bytes / 3) * 4 if binary else file_bytes
    return body + ref_record_bytes()


def record_bytes(file_bytes: int, inline_limit: int, *, binary: bool = True) -> int:
    """What one file puts into Firehose: inline up to the limit (as the forwarder decides, from
    the event's size), else by reference."""
    if file_bytes <= inline_limit:
        return inline_record_bytes(file_bytes, binary=binary)
    return ref_record_bytes()


@dataclass(frozen=True)
class FirehoseLoad:
    record_bytes: int
    bytes_per_stream: float
    """Per second."""
    quota_share: float
    """Of a stream's bytes quota (1.0 = all of it)."""
    streams_needed: int
    """To stay under the incoming-bytes alarm (ALARM_SHARE of the quota)."""
    records_per_stream: float
    requests_per_stream: float
    """PutRecordBatch calls per second per stream: one per forwarder batch at most."""

    @property
    def binding_share(self) -> float:
        """The largest share of any of the stream's three quotas."""
        return max(
            self.quota_share,
            self.records_per_stream / FIREHOSE_QUOTA_RECORDS,
            self.requests_per_stream / FIREHOSE_QUOTA_REQUESTS,
        )


def firehose_load(rate: float, record: int, streams: int, batch_size: int = 10) -> FirehoseLoad:
    """`rate` files/s of `record` bytes each, spread evenly over `streams` (by file_id)."""
    per_stream = rate * record / streams
    return FirehoseLoad(
        record_bytes=record,
        bytes_per_stream=per_stream,
        quota_share=per_stream / FIREHOSE_QUOTA_BYTES,
        streams_needed=max(1, math.ceil(rate * record / (FIREHOSE_QUOTA_BYTES * ALARM_SHARE))),
        records_per_stream=rate / streams,
        requests_per_stream=min(rate / batch_size, rate / streams),
    )


def firehose_capacity_files_per_s(record: int, streams: int) -> float:
    """Files/s the streams take before the incoming-bytes alarm (throttling comes at 100 %)."""
    return streams * FIREHOSE_QUOTA_BYTES * ALARM_SHARE / record


# ------------------------------------------------------------------------------ Lambda


def concurrency(invocations_per_s: float, seconds_each: float) -> float:
    """Little's law: invocations in flight on average."""
    return invocations_per_s * seconds_each


@dataclass(frozen=True)
class DeliveryLoad:
    window_file_bytes: float
    """File bytes in one stream's window: what one delivery invocation archives."""
    seconds_per_window: float
    concurrency: float
    """Deliveries in flight on average (windows arrive every buffer interval per stream)."""


def delivery_load(
    rate: float,
    file_bytes: float,
    streams: int,
    buffer_seconds: float,
    *,
    bytes_per_s: float,
    seconds_per_file: float = 0.0,
) -> DeliveryLoad:
    """Each stream closes a window every `buffer_seconds`; delivery streams a file's bytes at
    `bytes_per_s`, and spends at least `seconds_per_file` on any file (claim, tar header,
    manifest entry) — whichever is larger, as each figure was measured with both costs in."""
    files = rate * buffer_seconds / streams
    window = files * file_bytes
    seconds = files * max(file_bytes / bytes_per_s, seconds_per_file)
    return DeliveryLoad(
        window_file_bytes=window,
        seconds_per_window=seconds,
        concurrency=concurrency(streams / buffer_seconds, seconds),
    )


# ------------------------------------------------------------------------------ backlog


@dataclass(frozen=True)
class Backlog:
    peak_files: float
    """Files waiting when the burst ends (0: the pipeline keeps up)."""
    drain_seconds: float
    """After the burst, back at the baseline rate; inf when the baseline alone exceeds capacity."""


def backlog(baseline: float, burst: float, burst_seconds: float, capacity: float) -> Backlog:
    """A burst of `burst` files/s for `burst_seconds` into a pipeline that takes `capacity`
    files/s, then `baseline` files/s again."""
    peak = max(0.0, (burst - capacity) * burst_seconds)
    if peak == 0:
        return Backlog(0.0, 0.0)
    spare = capacity - baseline
    return Backlog(peak, peak / spare if spare > 0 else math.inf)


# ------------------------------------------------------------------------------ storage


@dataclass(frozen=True)
class StorageGrowth:
    """Bytes added per day at a steady rate."""

    landing: float
    staging: float
    """Envelopes, before gzip (an upper bound: refs compress several times)."""
    minio: float
    """Archive bytes, with no credit for gzip (binary bodies do not shrink)."""


def storage_per_day(rate: float, file_bytes: float, record: int) -> StorageGrowth:
    files = rate * SECONDS_PER_DAY
    return StorageGrowth(
        landing=files * file_bytes,
        staging=files * record,
        minio=files * (file_bytes + ARCHIVE_BYTES_PER_FILE),
    )


# ------------------------------------------------------------------------------ costs


@dataclass(frozen=True)
class MonthlyCosts:
    """Dollars a month (files and data: per month) at a steady rate."""

    files: float
    data_bytes: float
    puts: float
    transitions: float
    """deep_archive: one transition request per object."""
    hot: float
    """deep_archive: the days at Standard before the transition."""
    archive_added: float
    """deep_archive: what each month kept adds to every later month, at Deep Archive rates."""
    overhead_added: float
    """deep_archive: the 8 KiB per object billed at Standard, added each month kept."""
    expire: float
    """expire: the days kept at Standard."""
    firehose: float
    """Ingestion, one record per file, each billed as at least 5 KB."""
    transfer: float = 0.0
    """Data out of AWS to MinIO (both modes; not in the README's table)."""
    delivered_tags: float = 0.0
    """Both modes: one tag per file read by reference (over the inline limit), which the
    landing lifecycle waits for before it moves or expires the file."""
    outage_day: float = 0.0
    """Both modes: what each day MinIO is away adds, a day's files held at Standard until
    their windows are delivered, for each day they wait (0.5 day on average per day of
    outage, a whole day for the first)."""

    @property
    def added(self) -> float:
        return self.archive_added + self.overhead_added

    @property
    def deep_archive_month(self) -> float:
        """deep_archive's first month: PUTs, transitions, hot days, Firehose."""
        return self.puts + self.transitions + self.hot + self.firehose

    @property
    def expire_month(self) -> float:
        return self.puts + self.expire + self.firehose


def monthly_costs(
    rate: float,
    file_bytes: float,
    hot_days: int,
    expire_days: int,
    prices: dict[str, float] | None = None,
    *,
    record: int | None = None,
    inline_limit: int = 64 * KIB,
) -> MonthlyCosts:
    """`record`: the Firehose record's size (ref by default), billed in 5 KB increments."""
    p = PRICES if prices is None else prices
    files = rate * SECONDS_PER_MONTH
    data = files * file_bytes
    billed_record = math.ceil((record or 1) / FIREHOSE_RECORD_ROUNDING) * FIREHOSE_RECORD_ROUNDING
    return MonthlyCosts(
        files=files,
        data_bytes=data,
        puts=files / 1000 * p["s3_put_per_1000"],
        transitions=files / 1000 * p["s3_transition_deep_archive_per_1000"],
        hot=rate * SECONDS_PER_DAY * hot_days * file_bytes / GB * p["s3_standard_gb_month"],
        archive_added=(data + files * DEEP_ARCHIVE_OVERHEAD_ARCHIVE)
        / GB
        * p["s3_deep_archive_gb_month"],
        overhead_added=files * DEEP_ARCHIVE_OVERHEAD_STANDARD / GB * p["s3_standard_gb_month"],
        expire=rate * SECONDS_PER_DAY * expire_days * file_bytes / GB * p["s3_standard_gb_month"],
        firehose=files * billed_record / GB * p["firehose_ingest_gb"],
        transfer=data / GB * p.get("data_transfer_out_gb", 0.0),
        delivered_tags=(files / 1000 * p["s3_put_per_1000"]) if file_bytes > inline_limit else 0.0,
        outage_day=rate
        * SECONDS_PER_DAY
        * file_bytes
        / GB
        * p["s3_standard_gb_month"]
        / DAYS_PER_MONTH,
    )


def set_prices(prices: dict[str, float], items: list[str]) -> None:
    """Apply `NAME=VALUE` overrides; ValueError naming an unknown price or a bad value."""
    for item in items:
        name, _, value = item.partition("=")
        if name not in prices:
            raise ValueError(f"unknown price {name!r}; one of {sorted(prices)}")
        try:
            prices[name] = float(value)
        except ValueError:
            raise ValueError(f"price {name!r}: {value!r} is not a number") from None
