"""infrastructure/tunables.py with the shipped tunables.json and tunables.schema.json.

Every bad value is made by editing a deep copy of the real file, so the tests follow the file as
it evolves; `load_tunables` is exercised through SLUICE_PROFILE and SLUICE_TUNABLES_PATH with
modified copies written to `tmp_path`.
"""

from __future__ import annotations

import copy
import json
import string
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest

from infrastructure import environment
from infrastructure.tunables import (
    SCHEMA_FILE,
    TUNABLES_FILE,
    Tunables,
    TunablesError,
    load_tunables,
    merge,
    parse_tunables,
    read_tunables_document,
    required_env,
    resolve_profile,
    stream_names,
)
from transform import envelope
from transform.firehose_sender import MAX_RECORD_BYTES

DELETE = object()
"""Marker for `edited`: remove the value at the path instead of setting it."""


def shipped() -> dict[str, Any]:
    """A private deep copy of the real tunables.json."""
    return copy.deepcopy(json.loads(TUNABLES_FILE.read_text()))


def edited(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`document` with the dotted `path` (list indexes as digits) set to `value`, or deleted."""
    result = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return result


def write(tmp_path: Path, document: Any, name: str = "tunables.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


# --------------------------------------------------------------------------- the shipped file


@pytest.mark.parametrize("profile", ["aws", "local"])
def test_shipped_file_is_valid_for_each_profile(profile: str) -> None:
    # GIVEN the tunables.json that ships with Sluice
    document = read_tunables_document()

    # WHEN it is parsed for the profile
    tunables = parse_tunables(document, profile)

    # THEN it types cleanly, with every function the design names
    assert isinstance(tunables, Tunables)
    assert tunables.profile == profile
    assert set(tunables.functions) >= {"forwarder", "processor", "requeue"}


def test_default_profile_is_aws() -> None:
    # GIVEN the shipped document WHEN parsed without naming a profile
    tunables = parse_tunables(read_tunables_document())

    # THEN the aws profile applies: the top level as written, no override
    assert tunables.profile == "aws"
    assert (
        tunables.functions["forwarder"].timeout_seconds
        == (shipped()["functions"]["forwarder"]["timeout_seconds"])
    )


def test_shipped_aws_values_match_the_design() -> None:
    # GIVEN the aws profile of the shipped file
    t = parse_tunables(read_tunables_document(), "aws")

    # THEN the figures of DESIGN §2 and §5 are the ones configured
    assert t.region == "eu-west-2"
    assert t.ingest.batch_size == 10
    assert t.ingest.batching_window_seconds <= 1
    assert t.ingest.max_receive_count == 5
    assert t.ingest.queue_retention_seconds == 4 * 86_400
    assert t.ingest.dlq_retention_seconds == 14 * 86_400
    assert (t.firehose.processor_buffer_bytes, t.firehose.processor_buffer_seconds) == (
        1_048_576,
        10,
    )
    assert (t.firehose.destination_buffer_bytes, t.firehose.destination_buffer_seconds) == (
        64 * 1024 * 1024,
        60,
    )
    assert t.firehose.file_extension.endswith(".gz")
    assert t.forwarder.inline_limit_bytes == 64 * 1024
    assert t.forwarder.max_file_bytes == 5 * 1024**3
    assert {name: spec.handler for name, spec in t.functions.items()} == {
        "forwarder": "transform.forwarder.lambda_handler",
        "processor": "transform.processor.lambda_handler",
        "requeue": "transform.requeue.lambda_handler",
        "delivery": "delivery.handler.lambda_handler",
        "redrive": "delivery.redrive.lambda_handler",
        "intake": "transform.intake.handler.lambda_handler",
        "report": "delivery.report.lambda_handler",
    }


@pytest.mark.parametrize("profile", ["aws", "local"])
def test_each_profile_keeps_the_aws_invariants(profile: str) -> None:
    # GIVEN the shipped file parsed for the profile
    t = parse_tunables(read_tunables_document(), profile)
    forwarder_timeout = t.functions["forwarder"].timeout_seconds

    # THEN the invariants of DESIGN §4a and §5 hold, computed here independently of the module
    assert t.ingest.visibility_timeout_seconds >= (
        6 * forwarder_timeout + t.ingest.batching_window_seconds
    )
    assert t.forwarder.idempotency_ttl_seconds >= (
        t.ingest.queue_retention_seconds + t.ingest.dlq_retention_seconds
    )
    assert t.forwarder.put_retry_budget_seconds < forwarder_timeout
    assert t.forwarder.put_backoff_cap_seconds >= t.forwarder.put_backoff_base_seconds
    for spec in t.functions.values():
        assert set(spec.resource_environment) <= environment.RESOURCE_VARIABLES
    for rule in t.processor.payload_schemas:
        assert rule.schema_path.is_file()


def test_local_profile_shortens_timeouts_and_keeps_everything_else() -> None:
    # GIVEN both profiles of the shipped file
    aws = parse_tunables(read_tunables_document(), "aws")
    local = parse_tunables(read_tunables_document(), "local")

    # THEN local waits less
    assert local.functions["forwarder"].timeout_seconds < aws.functions["forwarder"].timeout_seconds
    assert local.ingest.visibility_timeout_seconds < aws.ingest.visibility_timeout_seconds
    # AND what it does not override is inherited unchanged (objects merge, they are not replaced)
    assert local.firehose == aws.firehose
    assert local.processor == aws.processor
    assert local.ingest.batch_size == aws.ingest.batch_size
    assert local.functions["forwarder"].handler == aws.functions["forwarder"].handler
    assert local.functions["forwarder"].environment == aws.functions["forwarder"].environment


def test_tunables_are_frozen() -> None:
    # GIVEN parsed tunables WHEN code tries to change one THEN it cannot
    t = parse_tunables(read_tunables_document())
    with pytest.raises(AttributeError, match="can't set attribute"):
        t.forwarder.inline_limit_bytes = 1  # type: ignore[misc]


def test_shipped_file_passes_an_independent_validator() -> None:
    # GIVEN jsonschema (installed with moto[server]), independent of the fastjsonschema the
    # module compiles
    schema = json.loads(SCHEMA_FILE.read_text())
    document = read_tunables_document()

    # WHEN the schema itself, the raw file and each resolved profile are checked
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)

    # THEN nothing is reported
    assert list(validator.iter_errors(document)) == []
    for profile in ("aws", "local"):
        assert list(validator.iter_errors(resolve_profile(document, profile))) == []


def test_independent_validator_agrees_that_a_bad_value_is_bad() -> None:
    # GIVEN a value only the schema forbids
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    bad = edited(shipped(), "forwarder.inline_limit_bytes", 716_801)

    # WHEN both validators judge it THEN both refuse it, at the same place
    errors = list(validator.iter_errors(bad))
    assert [list(error.absolute_path) for error in errors] == [["forwarder", "inline_limit_bytes"]]
    with pytest.raises(TunablesError, match=r"forwarder\.inline_limit_bytes"):
        parse_tunables(bad)


def test_largest_inline_body_still_fits_a_firehose_record() -> None:
    # GIVEN the schema's largest inline limit and a worst-case envelope: a binary body of that
    # size (base64 grows it by 4/3) and a 1,024-byte key made of characters JSON escapes 6-fold
    limit = json.loads(SCHEMA_FILE.read_text())["properties"]["forwarder"]["properties"][
        "inline_limit_bytes"
    ]["maximum"]
    body = b"\xff" * limit
    record = envelope.Envelope.inline(
        body,
        file_id=envelope.file_id("b" * 63, "\x01" * 1024, "v" * 1024) + "#r" + "9" * 64,
        bucket="b" * 63,
        key="\x01" * 1024,
        version_id="v" * 1024,
        size=limit,
        event_time_ms=2**62,
        forwarded_at_ms=2**62,
        sequencer="F" * 64,
        etag="e" * 64 + "-10000",
        requeue_attempts=2**31 - 1,
    )

    # WHEN it is encoded THEN it is within Firehose's record limit, which the sender enforces
    assert record.body_encoding == "base64"
    assert len(record.encode()) <= MAX_RECORD_BYTES


# --------------------------------------------------------------------------- profiles


def test_unknown_profile_error_lists_the_known_ones() -> None:
    # GIVEN the shipped document WHEN asked for a profile it lacks
    with pytest.raises(TunablesError) as caught:
        parse_tunables(read_tunables_document(), "staging")

    # THEN the message names the bad profile and every known one
    message = str(caught.value)
    assert "'staging'" in message
    assert "known profiles: aws, local" in message


def test_unknown_profile_lists_added_profiles_too() -> None:
    # GIVEN a document with an extra profile
    document = edited(shipped(), "profiles.perf", {"forwarder": {"read_concurrency": 16}})

    # WHEN an unknown profile is asked for THEN the extra one is listed, sorted
    with pytest.raises(TunablesError, match="known profiles: aws, local, perf"):
        parse_tunables(document, "nope")
    # AND the extra profile itself works
    assert parse_tunables(document, "perf").forwarder.read_concurrency == 16


def test_resolve_profile_drops_profiles_and_schema_keys() -> None:
    # GIVEN the shipped document WHEN resolved for local
    resolved = resolve_profile(read_tunables_document(), "local")

    # THEN only tunables remain, with the override applied
    assert "profiles" not in resolved
    assert "$schema" not in resolved
    assert (
        resolved["functions"]["forwarder"]["timeout_seconds"]
        == (shipped()["profiles"]["local"]["functions"]["forwarder"]["timeout_seconds"])
    )


def test_a_profile_override_is_validated_after_merging() -> None:
    # GIVEN a local profile that lengthens the forwarder timeout past its visibility timeout
    document = edited(shipped(), "profiles.local.functions.forwarder.timeout_seconds", 12)

    # THEN the aws profile is still fine
    parse_tunables(document, "aws")
    # AND the local one fails the invariant (70 < 6 x 12 + 1)
    with pytest.raises(TunablesError, match=r"'local'.*ingest\.visibility_timeout_seconds.*73"):
        parse_tunables(document, "local")


def test_a_profile_override_with_a_schema_violation_fails() -> None:
    # GIVEN a local profile that sets a destination buffer above 128 MiB
    document = edited(shipped(), "profiles.local.firehose", {"destination_buffer_bytes": 2**28})

    # THEN the local profile fails naming the value, the aws profile does not
    parse_tunables(document, "aws")
    with pytest.raises(TunablesError, match=r"firehose\.destination_buffer_bytes"):
        parse_tunables(document, "local")


@pytest.mark.parametrize(
    ("path", "value", "profile"),
    [
        ("profiles.local", 5, "local"),
        ("profiles", [], "aws"),
    ],
    ids=["profile-not-an-object", "profiles-not-an-object"],
)
def test_a_malformed_profiles_section_is_a_tunables_error(
    path: str, value: Any, profile: str
) -> None:
    # GIVEN a profiles section of the wrong shape (the schema wants an object of objects)
    document = edited(shipped(), path, value)

    # WHEN it is parsed THEN the failure is a TunablesError naming the section, like every other
    # bad value, not an AttributeError from deep inside the merge
    with pytest.raises(TunablesError, match="profiles"):
        parse_tunables(document, profile)


# --------------------------------------------------------------------------- bad values

SCHEMA_VIOLATIONS = [
    # (path, value, what the message must name)
    ("forwarder.inline_limit_bytes", 716_801, r"forwarder\.inline_limit_bytes"),
    ("forwarder.inline_limit_bytes", -1, r"forwarder\.inline_limit_bytes"),
    ("forwarder.put_max_attempts", 0, r"forwarder\.put_max_attempts"),
    ("forwarder.put_retry_budget_seconds", 0, r"forwarder\.put_retry_budget_seconds"),
    ("firehose.processor_buffer_bytes", 199_999, r"firehose\.processor_buffer_bytes"),
    ("firehose.processor_buffer_bytes", 3_000_001, r"firehose\.processor_buffer_bytes"),
    ("firehose.destination_buffer_bytes", 128 * 1024 * 1024 + 1, r"firehose\.destination_buffer"),
    ("firehose.destination_buffer_bytes", 1024 * 1024 - 1, r"firehose\.destination_buffer"),
    ("firehose.processor_buffer_seconds", 901, r"firehose\.processor_buffer_seconds"),
    ("firehose.file_extension", ".json", r"firehose\.file_extension"),
    ("firehose.file_extension", ".json.zst", r"firehose\.file_extension"),
    ("firehose.file_extension", "json.gz", r"firehose\.file_extension"),
    ("firehose.errors_prefix", "errors/dt=!{timestamp:yyyy}/", r"firehose\.errors_prefix"),
    ("ingest.dlq_retention_seconds", 4 * 86_400, r"ingest\.dlq_retention_seconds"),
    ("ingest.batch_size", "10", r"ingest\.batch_size"),
    ("ingest.batch_size", True, r"ingest\.batch_size"),
    ("ingest.batch_size", 2.5, r"ingest\.batch_size"),
    ("ingest.maximum_concurrency", 1, r"ingest\.maximum_concurrency"),
    ("region", "Europe", r"region"),
    ("functions.processor.memory_mb", 64, r"functions\.processor\.memory_mb"),
    ("functions.requeue.timeout_seconds", 901, r"functions\.requeue\.timeout_seconds"),
    ("functions.forwarder.handler", "transform.forwarder.main", r"functions\.forwarder\.handler"),
    ("functions.forwarder.resource_environment", ["STAGING"], r"resource_environment"),
    ("processor.payload_schemas.0.format", "xml", r"processor\.payload_schemas"),
    ("processor.payload_schemas.0.schema", "payloads/order.json", r"processor\.payload_schemas"),
    ("requeue.max_attempts", 0, r"requeue\.max_attempts"),
]


@pytest.mark.parametrize(
    ("path", "value", "named"),
    SCHEMA_VIOLATIONS,
    ids=[f"{path}={value!r}" for path, value, _ in SCHEMA_VIOLATIONS],
)
def test_schema_violation_names_the_value(path: str, value: Any, named: str) -> None:
    # GIVEN the shipped file with one value out of the schema's bounds
    document = edited(shipped(), path, value)

    # WHEN it is parsed THEN a TunablesError names the profile and the offending path
    with pytest.raises(TunablesError, match=named) as caught:
        parse_tunables(document, "aws")
    assert "'aws'" in str(caught.value)
    # AND the independent validator refuses it too (the schema, not Python, says it is bad)
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    assert list(validator.iter_errors(document))


BOUNDARY_VALUES = [
    ("forwarder.inline_limit_bytes", 716_800),
    ("forwarder.inline_limit_bytes", 0),
    ("firehose.processor_buffer_bytes", 200_000),
    ("firehose.processor_buffer_bytes", 3_000_000),
    ("firehose.destination_buffer_bytes", 128 * 1024 * 1024),
    ("firehose.destination_buffer_bytes", 1024 * 1024),
    ("firehose.file_extension", ".ndjson.gz"),
]


@pytest.mark.parametrize(
    ("path", "value"), BOUNDARY_VALUES, ids=[f"{p}={v!r}" for p, v in BOUNDARY_VALUES]
)
def test_values_at_the_limits_are_accepted(path: str, value: Any) -> None:
    # GIVEN a value exactly at an AWS limit WHEN parsed THEN it is accepted as written
    tunables = parse_tunables(edited(shipped(), path, value))
    section, name = path.split(".")
    assert getattr(getattr(tunables, section), name) == value


def test_unknown_property_is_named() -> None:
    # GIVEN a misspelt key inside a section
    document = edited(shipped(), "ingest.batch_sise", 10)

    # THEN the error names the section and the unknown key
    with pytest.raises(TunablesError, match=r"ingest.*batch_sise"):
        parse_tunables(document)


def test_unknown_top_level_property_is_named() -> None:
    document = edited(shipped(), "delivery_tunables", {})
    with pytest.raises(TunablesError, match="delivery_tunables"):
        parse_tunables(document)


def test_unknown_property_in_a_function_is_named() -> None:
    document = edited(shipped(), "functions.forwarder.timeout", 30)
    with pytest.raises(TunablesError, match=r"functions\.forwarder.*'timeout'"):
        parse_tunables(document)


@pytest.mark.parametrize("section", ["ingest", "firehose", "forwarder", "processor", "requeue"])
def test_missing_required_section_is_named(section: str) -> None:
    # GIVEN the shipped file without a whole section
    document = edited(shipped(), section, DELETE)

    # WHEN parsed for aws (the local profile would re-create a partial section)
    with pytest.raises(TunablesError) as caught:
        parse_tunables(document, "aws")

    # THEN the message names the missing section and no section that is present
    message = str(caught.value)
    assert section in message
    present = {"ingest", "firehose", "forwarder", "processor", "requeue"} - {section}
    assert not [name for name in present if f"'{name}'" in message]


def test_missing_required_field_is_named() -> None:
    document = edited(shipped(), "ingest.max_receive_count", DELETE)
    with pytest.raises(TunablesError, match=r"data\.ingest.*max_receive_count"):
        parse_tunables(document)


def test_missing_required_function_is_named() -> None:
    document = edited(shipped(), "functions.requeue", DELETE)
    with pytest.raises(TunablesError, match=r"functions.*requeue"):
        parse_tunables(document, "aws")


def test_visibility_timeout_too_short_is_named() -> None:
    # GIVEN a visibility timeout one second short of 6 x 30 + 1
    document = edited(shipped(), "ingest.visibility_timeout_seconds", 180)

    # THEN the error names both sides of the invariant
    with pytest.raises(TunablesError) as caught:
        parse_tunables(document)
    message = str(caught.value)
    assert "ingest.visibility_timeout_seconds is 180" in message
    assert "functions.forwarder.timeout_seconds" in message
    assert "= 181" in message


def test_a_p999_objective_below_the_p95_one_is_named() -> None:
    # GIVEN the report's objectives the wrong way round
    document = edited(shipped(), "report.slo_p999_seconds", 119)
    # THEN the error names both
    with pytest.raises(TunablesError, match=r"report\.slo_p999_seconds \(119\).*report\.slo_p95"):
        parse_tunables(document)


@pytest.mark.parametrize(("codec", "level"), [("isal", 6), ("zlib", 0)])
def test_a_gzip_level_outside_its_codecs_range_is_named(codec: str, level: int) -> None:
    # GIVEN a level the codec does not take (ISA-L 0-3, zlib 1-9)
    document = edited(edited(shipped(), "delivery.gzip_codec", codec), "delivery.gzip_level", level)
    # THEN the error names the level and the codec's range
    with pytest.raises(
        TunablesError, match=rf"delivery\.gzip_level is {level}; gzip codec '{codec}'"
    ):
        parse_tunables(document)


def test_the_report_runs_each_morning_for_the_day_before() -> None:
    # GIVEN the shipped file THEN the report's schedule and objective are the issue's and seed's
    report = parse_tunables(read_tunables_document()).report
    assert (report.schedule_hour_utc, report.schedule_minute, report.days_back) == (8, 0, 1)
    assert (report.slo_p95_seconds, report.slo_p999_seconds) == (120, 180)


def test_visibility_timeout_exactly_at_the_invariant_is_accepted() -> None:
    document = edited(shipped(), "ingest.visibility_timeout_seconds", 181)
    assert parse_tunables(document).ingest.visibility_timeout_seconds == 181


def test_visibility_invariant_counts_the_batching_window() -> None:
    # GIVEN a 5 s batching window: 181 is no longer enough (6 x 30 + 5 = 185)
    document = edited(shipped(), "ingest.batching_window_seconds", 5)
    document = edited(document, "ingest.visibility_timeout_seconds", 184)
    with pytest.raises(TunablesError, match="= 185"):
        parse_tunables(document)


def test_idempotency_ttl_too_short_is_named() -> None:
    # GIVEN a TTL one second short of ingest retention + DLQ retention
    needed = 4 * 86_400 + 14 * 86_400
    document = edited(shipped(), "forwarder.idempotency_ttl_seconds", needed - 1)

    # THEN the error names the value and what it must reach
    with pytest.raises(TunablesError) as caught:
        parse_tunables(document)
    message = str(caught.value)
    assert "forwarder.idempotency_ttl_seconds" in message
    assert f"= {needed}" in message

    # AND exactly the sum is accepted
    at_limit = edited(shipped(), "forwarder.idempotency_ttl_seconds", needed)
    assert parse_tunables(at_limit).forwarder.idempotency_ttl_seconds == needed


def test_idempotency_ttl_follows_a_longer_queue_retention() -> None:
    # GIVEN the ingest queue kept longer than the TTL allows for
    document = edited(shipped(), "ingest.queue_retention_seconds", 1_209_600)
    with pytest.raises(TunablesError, match=r"forwarder\.idempotency_ttl_seconds"):
        parse_tunables(document)


def test_backoff_cap_below_base_is_named() -> None:
    document = edited(shipped(), "forwarder.put_backoff_cap_seconds", 0.05)
    with pytest.raises(TunablesError, match=r"forwarder\.put_backoff_cap_seconds \(0\.05\)"):
        parse_tunables(document)


def test_backoff_cap_equal_to_base_is_accepted() -> None:
    document = edited(shipped(), "forwarder.put_backoff_cap_seconds", 0.1)
    assert parse_tunables(document).forwarder.put_backoff_cap_seconds == 0.1


@pytest.mark.parametrize("budget", [30, 31])
def test_retry_budget_not_below_forwarder_timeout_is_named(budget: int) -> None:
    document = edited(shipped(), "forwarder.put_retry_budget_seconds", budget)
    with pytest.raises(TunablesError, match=r"forwarder\.put_retry_budget_seconds.*\(30\)"):
        parse_tunables(document)


def test_retry_budget_just_below_forwarder_timeout_is_accepted() -> None:
    document = edited(shipped(), "forwarder.put_retry_budget_seconds", 29.5)
    assert parse_tunables(document).forwarder.put_retry_budget_seconds == 29.5


def test_unknown_resource_variable_is_named() -> None:
    # GIVEN a function that asks for a resource variable nobody binds
    document = edited(
        shipped(),
        "functions.processor.resource_environment",
        ["SLUICE_STAGING_BUCKET", "SLUICE_NOT_A_RESOURCE"],
    )

    # THEN the error names the function, the variable and the known ones
    with pytest.raises(TunablesError) as caught:
        parse_tunables(document)
    message = str(caught.value)
    assert "functions.processor.resource_environment" in message
    assert "SLUICE_NOT_A_RESOURCE" in message
    assert environment.STAGING_BUCKET in message


def test_payload_schema_file_that_does_not_exist_is_named() -> None:
    document = edited(shipped(), "processor.payload_schemas.0.schema", "payloads/invoice.avsc")
    with pytest.raises(
        TunablesError, match=r"processor\.payload_schemas.*'payloads/invoice\.avsc'"
    ):
        parse_tunables(document)


def test_payload_schema_rule_resolves_under_the_schemas_directory() -> None:
    t = parse_tunables(read_tunables_document())
    rule = t.processor.payload_schemas[0]
    assert rule.schema_path.name == "order.avsc"
    assert rule.schema_path.parent.name == "payloads"
    assert all(rule.schema_path.is_file() for rule in t.processor.payload_schemas)


def test_two_payload_types_with_one_table_are_refused() -> None:
    # GIVEN the shipped types with the second renamed to the first's table
    document = edited(shipped(), "processor.payload_schemas.1.table", "orders")
    # WHEN parsed THEN the clash is named
    with pytest.raises(TunablesError, match="names a table twice"):
        parse_tunables(document)


# --------------------------------------------------------------------------- merge


def test_merge_merges_objects_recursively() -> None:
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": 1}
    override = {"a": {"y": {"q": 3, "r": 4}}, "c": 5}
    assert merge(base, override) == {"a": {"x": 1, "y": {"p": 1, "q": 3, "r": 4}}, "b": 1, "c": 5}


def test_merge_replaces_lists_and_scalars() -> None:
    base = {"list": [1, 2, 3], "n": 1, "s": "x", "obj": {"k": 1}, "scalar": 1}
    override = {"list": [9], "n": 2.5, "s": None, "obj": [1], "scalar": {"k": 2}}
    assert merge(base, override) == override


def test_merge_with_empty_override_is_a_copy() -> None:
    base = {"a": {"b": [1]}}
    merged = merge(base, {})
    assert merged == base
    assert merged is not base
    assert merged["a"] is not base["a"]


def test_merge_does_not_mutate_its_inputs_nor_share_with_them() -> None:
    # GIVEN nested inputs and snapshots of them
    base = {"a": {"x": [1, 2], "y": {"z": 1}}, "keep": {"deep": [1]}}
    override = {"a": {"x": [3], "w": {"v": [4]}}}
    base_before, override_before = copy.deepcopy(base), copy.deepcopy(override)

    # WHEN merged and the result mutated all over
    merged = merge(base, override)
    merged["a"]["x"].append(99)
    merged["a"]["w"]["v"].append(99)
    merged["a"]["y"]["z"] = 99
    merged["keep"]["deep"].append(99)

    # THEN neither input changed
    assert base == base_before
    assert override == override_before


# --------------------------------------------------------------------------- load_tunables


def test_load_tunables_defaults_to_the_packaged_file_and_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(environment.PROFILE, raising=False)
    monkeypatch.delenv(environment.TUNABLES_PATH, raising=False)
    t = load_tunables()
    assert t == parse_tunables(read_tunables_document(), "aws")


def test_load_tunables_honours_sluice_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(environment.PROFILE, "local")
    monkeypatch.delenv(environment.TUNABLES_PATH, raising=False)
    t = load_tunables()
    assert t.profile == "local"
    assert (
        t.functions["forwarder"].timeout_seconds
        == (shipped()["profiles"]["local"]["functions"]["forwarder"]["timeout_seconds"])
    )


def test_load_tunables_unknown_profile_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(environment.PROFILE, "prod")
    monkeypatch.delenv(environment.TUNABLES_PATH, raising=False)
    with pytest.raises(TunablesError, match=r"'prod'.*known profiles: aws, local"):
        load_tunables()


def test_load_tunables_honours_sluice_tunables_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a modified copy of the real file, in both its top level and its local profile
    document = edited(shipped(), "forwarder.inline_limit_bytes", 1234)
    document = edited(document, "profiles.local.forwarder.read_concurrency", 3)
    monkeypatch.setenv(environment.TUNABLES_PATH, str(write(tmp_path, document)))

    # WHEN loaded for aws, then (cold start) for local
    monkeypatch.delenv(environment.PROFILE, raising=False)
    aws = load_tunables()
    load_tunables.cache_clear()
    monkeypatch.setenv(environment.PROFILE, "local")
    local = load_tunables()

    # THEN both come from the copy
    assert aws.forwarder.inline_limit_bytes == 1234
    assert aws.forwarder.read_concurrency == shipped()["forwarder"]["read_concurrency"]
    assert local.forwarder.inline_limit_bytes == 1234
    assert local.forwarder.read_concurrency == 3


def test_load_tunables_validates_the_file_it_is_pointed_at(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = edited(shipped(), "firehose.file_extension", ".json")
    monkeypatch.setenv(environment.TUNABLES_PATH, str(write(tmp_path, bad)))
    monkeypatch.delenv(environment.PROFILE, raising=False)
    with pytest.raises(TunablesError, match=r"firehose\.file_extension"):
        load_tunables()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read tunables from"),
        ("{not json", "cannot read tunables from"),
        ("[1, 2]", "must be a JSON object"),
    ],
    ids=["missing-file", "not-json", "not-an-object"],
)
def test_load_tunables_unreadable_file_names_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "tunables.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
    with pytest.raises(TunablesError, match=message) as caught:
        load_tunables()
    assert str(path) in str(caught.value)


def test_load_tunables_is_cached_until_cleared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a copy of the file, loaded once
    path = write(tmp_path, shipped())
    monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
    monkeypatch.delenv(environment.PROFILE, raising=False)
    first = load_tunables()

    # WHEN the file and the profile change underneath
    path.write_text(json.dumps(edited(shipped(), "forwarder.inline_limit_bytes", 4096)))
    monkeypatch.setenv(environment.PROFILE, "local")

    # THEN the process keeps what it read at cold start: the very same object
    assert load_tunables() is first
    assert (
        load_tunables().forwarder.inline_limit_bytes == shipped()["forwarder"]["inline_limit_bytes"]
    )

    # AND after cache_clear (a new cold start) the changes are read
    load_tunables.cache_clear()
    fresh = load_tunables()
    assert fresh is not first
    assert fresh.profile == "local"
    assert fresh.forwarder.inline_limit_bytes == 4096


# --------------------------------------------------------------------------- environment


def test_required_env_returns_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(environment.STAGING_BUCKET, "  staging-bucket \n")
    assert required_env(environment.STAGING_BUCKET) == "staging-bucket"


@pytest.mark.parametrize("value", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_required_env_missing_or_empty_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(environment.IDEMPOTENCY_TABLE, raising=False)
    else:
        monkeypatch.setenv(environment.IDEMPOTENCY_TABLE, value)
    with pytest.raises(TunablesError, match=environment.IDEMPOTENCY_TABLE):
        required_env(environment.IDEMPOTENCY_TABLE)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("sluice-0", ("sluice-0",)),
        ("sluice-0,sluice-1", ("sluice-0", "sluice-1")),
        (" sluice-0 , sluice-1 ", ("sluice-0", "sluice-1")),
    ],
)
def test_stream_names_splits_and_strips(
    monkeypatch: pytest.MonkeyPatch, raw: str, names: tuple[str, ...]
) -> None:
    monkeypatch.setenv(environment.FIREHOSE_STREAMS, raw)
    assert stream_names() == names


@pytest.mark.parametrize("raw", ["a,,b", "a,", ",a", "a, ,b", ","])
def test_stream_names_refuses_an_empty_name(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(environment.FIREHOSE_STREAMS, raw)
    with pytest.raises(TunablesError, match="empty stream name") as caught:
        stream_names()
    assert environment.FIREHOSE_STREAMS in str(caught.value)
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize("value", [None, ""], ids=["missing", "empty"])
def test_stream_names_missing_or_empty_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(environment.FIREHOSE_STREAMS, raising=False)
    else:
        monkeypatch.setenv(environment.FIREHOSE_STREAMS, value)
    with pytest.raises(TunablesError, match=environment.FIREHOSE_STREAMS):
        stream_names()


def test_resource_variables_are_sluice_names() -> None:
    # The schema only admits SLUICE_* names in resource_environment; the Python list must agree.
    assert environment.RESOURCE_VARIABLES
    allowed = set(string.ascii_uppercase + string.digits + "_")
    for name in environment.RESOURCE_VARIABLES:
        assert name.startswith("SLUICE_")
        assert set(name) <= allowed
