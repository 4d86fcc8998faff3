"""tunables.json as typed, validated configuration.

One file holds every tunable (DESIGN §3). This module merges the chosen profile over the top
level, validates the result against tunables.schema.json and the cross-field invariants AWS
imposes, and returns NamedTuples: immutable, and ~10x cheaper than a frozen dataclass to define
at import, which every cold start pays. Functions call `load_tunables()` once per cold start (it
is cached); a bad value raises `TunablesError` naming the value.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any, Final, NamedTuple

import fastjsonschema

from infrastructure import environment

TUNABLES_FILE = Path(__file__).with_name("tunables.json")
SCHEMA_FILE = Path(__file__).with_name("tunables.schema.json")
SCHEMAS_DIR = Path(__file__).with_name("schemas")

DEFAULT_PROFILE = "aws"


GZIP_CODECS: Final = {"isal": range(4), "zlib": range(1, 10)}
"""The deflate implementations an archive can be written with (`delivery.gzip_codec`), and the
levels each takes. ISA-L's level 2 deflates ~10x faster than zlib's level 6 for ~10 % more bytes
(docs/BENCHMARKS.md); any gzip reader reads either."""


class TunablesError(ValueError):
    """tunables.json, a profile of it, or a resource variable is invalid."""


class IngestTunables(NamedTuple):
    queue_retention_seconds: int
    dlq_retention_seconds: int
    max_receive_count: int
    visibility_timeout_seconds: int
    batch_size: int
    batching_window_seconds: int
    maximum_concurrency: int


class FirehoseTunables(NamedTuple):
    stream_count: int
    processor_buffer_bytes: int
    processor_buffer_seconds: int
    processor_retries: int
    destination_buffer_bytes: int
    destination_buffer_seconds: int
    buffers_prefix: str
    errors_prefix: str
    file_extension: str


class ForwarderTunables(NamedTuple):
    inline_limit_bytes: int
    max_file_bytes: int
    read_concurrency: int
    put_max_attempts: int
    put_retry_budget_seconds: float
    put_backoff_base_seconds: float
    put_backoff_cap_seconds: float
    idempotency_ttl_seconds: int


class PayloadSchemaRule(NamedTuple):
    """A payload type: files under `prefix` hold records of `schema` in `format`; their
    records are the rows of `table` (see infrastructure/payload_tables.py)."""

    prefix: str
    schema: str
    format: str
    table: str
    csv_delimiter: str = ","
    invalid: str | None = None
    """"quarantine" or "report"; None: "report" for csv, "quarantine" otherwise."""

    @property
    def holds_back_invalid(self) -> bool:
        """True when a body failing its schema is quarantined or excluded, not delivered."""
        return (self.invalid or ("report" if self.format == "csv" else "quarantine")) == (
            "quarantine"
        )

    @property
    def schema_path(self) -> Path:
        return SCHEMAS_DIR / self.schema


class ProcessorTunables(NamedTuple):
    payload_schemas: tuple[PayloadSchemaRule, ...]


class RequeueTunables(NamedTuple):
    max_attempts: int


class DeliveryTunables(NamedTuple):
    archive_prefix: str
    archive_max_input_bytes: int
    min_part_size_bytes: int
    max_parts: int
    gzip_codec: str
    gzip_level: int
    upload_attempts: int
    retry_backoff_base_seconds: float
    retry_backoff_cap_seconds: float
    read_chunk_bytes: int
    max_json_validation_bytes: int
    secret_max_age_seconds: int
    ledger_ttl_seconds: int
    staging_retention_days: int
    delivered_tag: str
    async_retry_attempts: int
    async_max_event_age_seconds: int
    dlq_retention_seconds: int
    minio_tls_required: bool = True
    """Refuse a MinIO secret saying `"secure": false` (the local profile allows it)."""


class IntakeTunables(NamedTuple):
    max_body_bytes: int
    max_events: int
    max_errors_reported: int
    idempotency_ttl_seconds: int
    secret_max_age_seconds: int
    producer_requests_per_second: dict[str, int]
    """Per producer, per route name (`files`, `events`): API Gateway throttles only per route."""


class RedriveTunables(NamedTuple):
    limit_per_run: int
    min_age_seconds: int
    jitter_seconds: int
    max_redrives: int
    unrecorded_grace_seconds: int
    claimed_stale_seconds: int
    lookback_hours: int
    schedule_minutes: int
    reconcile_max_versions: int = 200_000
    """0: no hourly reconcile (delivery.hourly_reconcile)."""
    inventory_files_per_run: int = 4
    """Data files of the landing bucket's S3 Inventory report read a run (delivery.inventory)."""


class ReportTunables(NamedTuple):
    """The daily report (delivery/report.py, docs/report.md)."""

    schedule_hour_utc: int
    schedule_minute: int
    days_back: int
    """The scheduled run reports the UTC day this many days before its own."""
    slo_p95_seconds: int
    slo_p999_seconds: int
    top_producers: int
    retention_days: int


class FunctionSpec(NamedTuple):
    handler: str
    memory_mb: int
    timeout_seconds: int
    environment: dict[str, str]
    resource_environment: tuple[str, ...]
    ephemeral_storage_mb: int = 512


class Tunables(NamedTuple):
    profile: str
    region: str
    metrics_namespace: str
    ingest: IngestTunables
    firehose: FirehoseTunables
    forwarder: ForwarderTunables
    processor: ProcessorTunables
    requeue: RequeueTunables
    delivery: DeliveryTunables
    redrive: RedriveTunables
    intake: IntakeTunables
    report: ReportTunables
    functions: dict[str, FunctionSpec]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`: objects merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for name, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = merge(merged[name], value)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


@functools.cache
def _validator() -> Any:
    return fastjsonschema.compile(json.loads(SCHEMA_FILE.read_text()))


def resolve_profile(document: dict[str, Any], profile: str) -> dict[str, Any]:
    """The top level of tunables.json with `profiles[profile]` merged over it."""
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise TunablesError("tunables: 'profiles' must be an object of objects (name -> overrides)")
    if profile != DEFAULT_PROFILE and profile not in profiles:
        known = ", ".join([DEFAULT_PROFILE, *sorted(profiles)])
        raise TunablesError(f"unknown tunables profile {profile!r}; known profiles: {known}")
    resolved = merge(document, profiles.get(profile, {}))
    resolved.pop("profiles", None)
    resolved.pop("$schema", None)
    return resolved


def parse_tunables(document: dict[str, Any], profile: str = DEFAULT_PROFILE) -> Tunables:
    """Validate a tunables document (already parsed JSON) for `profile` and type it."""
    resolved = resolve_profile(document, profile)
    try:
        _validator()(resolved)
    except fastjsonschema.JsonSchemaValueException as err:
        raise TunablesError(f"tunables profile {profile!r}: {err.message}") from err
    tunables = Tunables(
        profile=profile,
        region=resolved["region"],
        metrics_namespace=resolved["metrics_namespace"],
        ingest=IngestTunables(**resolved["ingest"]),
        firehose=FirehoseTunables(**resolved["firehose"]),
        forwarder=ForwarderTunables(**resolved["forwarder"]),
        processor=ProcessorTunables(
            payload_schemas=tuple(
                PayloadSchemaRule(**rule) for rule in resolved["processor"]["payload_schemas"]
            )
        ),
        requeue=RequeueTunables(**resolved["requeue"]),
        delivery=DeliveryTunables(**resolved["delivery"]),
        redrive=RedriveTunables(**resolved["redrive"]),
        intake=IntakeTunables(**resolved["intake"]),
        report=ReportTunables(**resolved["report"]),
        functions={
            name: FunctionSpec(
                handler=spec["handler"],
                memory_mb=spec["memory_mb"],
                timeout_seconds=spec["timeout_seconds"],
                environment=dict(spec["environment"]),
                resource_environment=tuple(spec["resource_environment"]),
                ephemeral_storage_mb=spec.get("ephemeral_storage_mb", 512),
            )
            for name, spec in resolved["functions"].items()
        },
    )
    _check_invariants(tunables)
    return tunables


def _check_invariants(t: Tunables) -> None:
    """What the schema cannot say: relations between values that AWS (or DESIGN §4a) requires."""
    where = f"tunables profile {t.profile!r}"
    forwarder_timeout = t.functions["forwarder"].timeout_seconds
    needed_visibility = 6 * forwarder_timeout + t.ingest.batching_window_seconds
    if t.ingest.visibility_timeout_seconds < needed_visibility:
        raise TunablesError(
            f"{where}: ingest.visibility_timeout_seconds is {t.ingest.visibility_timeout_seconds}, "
            f"must be at least 6 x functions.forwarder.timeout_seconds + "
            f"ingest.batching_window_seconds = {needed_visibility}"
        )
    needed_ttl = t.ingest.queue_retention_seconds + t.ingest.dlq_retention_seconds
    if t.forwarder.idempotency_ttl_seconds < needed_ttl:
        raise TunablesError(
            f"{where}: forwarder.idempotency_ttl_seconds is {t.forwarder.idempotency_ttl_seconds}, "
            f"must be at least ingest.queue_retention_seconds + ingest.dlq_retention_seconds "
            f"= {needed_ttl}, or a redriven message could be forwarded twice"
        )
    if t.forwarder.put_backoff_cap_seconds < t.forwarder.put_backoff_base_seconds:
        raise TunablesError(
            f"{where}: forwarder.put_backoff_cap_seconds ({t.forwarder.put_backoff_cap_seconds}) "
            f"is below forwarder.put_backoff_base_seconds ({t.forwarder.put_backoff_base_seconds})"
        )
    if t.forwarder.put_retry_budget_seconds >= forwarder_timeout:
        raise TunablesError(
            f"{where}: forwarder.put_retry_budget_seconds ({t.forwarder.put_retry_budget_seconds}) "
            f"must be below functions.forwarder.timeout_seconds ({forwarder_timeout})"
        )
    _check_delivery(t, needed_ttl, where)
    if t.report.slo_p999_seconds < t.report.slo_p95_seconds:
        raise TunablesError(
            f"{where}: report.slo_p999_seconds ({t.report.slo_p999_seconds}) is below "
            f"report.slo_p95_seconds ({t.report.slo_p95_seconds}): 99.9% of files cannot be "
            "faster than 95% of them"
        )
    for name, spec in t.functions.items():
        unknown = set(spec.resource_environment) - environment.RESOURCE_VARIABLES
        if unknown:
            raise TunablesError(
                f"{where}: functions.{name}.resource_environment names unknown variables "
                f"{sorted(unknown)}; known: {sorted(environment.RESOURCE_VARIABLES)}"
            )
    tables = [rule.table for rule in t.processor.payload_schemas]
    if len(set(tables)) != len(tables):
        raise TunablesError(
            f"{where}: processor.payload_schemas names a table twice: {sorted(tables)}"
        )
    for rule in t.processor.payload_schemas:
        if not rule.schema_path.is_file():
            raise TunablesError(
                f"{where}: processor.payload_schemas prefix {rule.prefix!r} names schema "
                f"{rule.schema!r}, which is not a file under {SCHEMAS_DIR}"
            )


def _check_delivery(t: Tunables, ingest_ttl: int, where: str) -> None:
    """Delivery's relations: its ledger outlives every duplicate, its backoff and gzip levels."""
    firehose_day = 24 * 3600
    needed_ledger_ttl = ingest_ttl + firehose_day + t.delivery.dlq_retention_seconds
    if t.delivery.ledger_ttl_seconds < needed_ledger_ttl:
        raise TunablesError(
            f"{where}: delivery.ledger_ttl_seconds is {t.delivery.ledger_ttl_seconds}, must be at "
            f"least ingest retention + ingest DLQ retention + Firehose's 24 h + delivery DLQ "
            f"retention = {needed_ledger_ttl}, or a late duplicate could be delivered twice"
        )
    if t.delivery.retry_backoff_cap_seconds < t.delivery.retry_backoff_base_seconds:
        raise TunablesError(
            f"{where}: delivery.retry_backoff_cap_seconds is below "
            f"delivery.retry_backoff_base_seconds"
        )
    levels = GZIP_CODECS[t.delivery.gzip_codec]
    if t.delivery.gzip_level not in levels:
        raise TunablesError(
            f"{where}: delivery.gzip_level is {t.delivery.gzip_level}; gzip codec "
            f"{t.delivery.gzip_codec!r} takes levels {levels.start}-{levels.stop - 1}"
        )


def read_tunables_document(path: Path | None = None) -> dict[str, Any]:
    path = path or TUNABLES_FILE
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TunablesError(f"cannot read tunables from {path}: {err}") from err
    if not isinstance(document, dict):
        raise TunablesError(f"tunables in {path} must be a JSON object")
    return document


@functools.cache
def load_tunables() -> Tunables:
    """The tunables for this process: profile from SLUICE_PROFILE, file from SLUICE_TUNABLES_PATH.

    Cached: read once per cold start. Tests call `load_tunables.cache_clear()`.
    """
    profile = os.environ.get(environment.PROFILE, DEFAULT_PROFILE)
    override = os.environ.get(environment.TUNABLES_PATH)
    return parse_tunables(read_tunables_document(Path(override) if override else None), profile)


def required_env(name: str) -> str:
    """A resource variable that must be set; a missing or empty one fails the cold start."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise TunablesError(
            f"environment variable {name} is not set; Terraform or the local "
            f"stack binds it (see resource_environment in tunables.json)"
        )
    return value


def stream_names() -> tuple[str, ...]:
    """SLUICE_FIREHOSE_STREAMS as a tuple of names, at least one."""
    raw = required_env(environment.FIREHOSE_STREAMS)
    names = tuple(name.strip() for name in raw.split(","))
    if any(not name for name in names):
        raise TunablesError(f"{environment.FIREHOSE_STREAMS} has an empty stream name: {raw!r}")
    return names
