"""Firehose's S3 key namespaces: prefix expressions and the object name suffix."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from infrastructure.local.firehose_prefixes import (
    KeyPrefix,
    PrefixError,
    object_name,
    parse_date_pattern,
)
from infrastructure.tunables import load_tunables

WHEN = datetime(2025, 3, 4, 9, 5, 7, tzinfo=UTC)


def test_repository_prefixes_render_dt_and_hour() -> None:
    # GIVEN the prefixes tunables.json configures
    firehose = load_tunables().firehose
    # WHEN they are evaluated for an object whose oldest record arrived at WHEN
    data = KeyPrefix(firehose.buffers_prefix).render(WHEN)
    errors = KeyPrefix(firehose.errors_prefix, error_prefix=True).render(
        WHEN, error_output_type="processing-failed"
    )
    # THEN they give the partitions Athena and delivery expect
    assert data == "buffers/dt=2025-03-04/hour=09/"
    assert errors == "errors/processing-failed/dt=2025-03-04/"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("!{timestamp:yyyy'-'MM'-'dd}", "2025-03-04"),
        ("!{timestamp:'y='yyyy'/m='MM}/", "y=2025/m=03/"),
        ("!{timestamp:'it''s' HH}", "it's 09"),
        ("!{timestamp:HH''mm}", "09'05"),
        ("!{timestamp:yy/M/d/H/m/s}", "25/3/4/9/5/7"),
        ("!{timestamp:uuuu}-!{timestamp:mm:ss}", "2025-05:07"),
        ("plain/prefix/", "plain/prefix/"),
        ("", ""),
    ],
)
def test_timestamp_patterns_and_quoted_literals(template: str, expected: str) -> None:
    # GIVEN a prefix with Java DateTimeFormatter patterns, quoted literals and punctuation
    # WHEN it is rendered
    rendered = KeyPrefix(template).render(WHEN)
    # THEN fields are formatted as Java would, and quoted text is copied without its quotes
    assert rendered == expected


def test_every_timestamp_expression_is_the_same_instant() -> None:
    # GIVEN a prefix that uses the timestamp namespace twice
    prefix = KeyPrefix("!{timestamp:yyyy}/!{timestamp:yyyy-MM-dd-HH}/")
    # WHEN it is rendered
    # THEN both expressions evaluate to the one instant given
    assert prefix.render(WHEN) == "2025/2025-03-04-09/"


def test_random_string_is_eleven_alphanumerics_each_time() -> None:
    # GIVEN a prefix with the random-string expression
    prefix = KeyPrefix("r=!{firehose:random-string}/")
    # WHEN it is rendered twice
    first, second = prefix.render(WHEN), prefix.render(WHEN)
    # THEN each is 11 letters or digits, drawn afresh
    assert re.fullmatch(r"r=[A-Za-z0-9]{11}/", first)
    assert re.fullmatch(r"r=[A-Za-z0-9]{11}/", second)
    assert first != second


def test_random_string_source_is_injectable() -> None:
    prefix = KeyPrefix("!{firehose:random-string}")
    assert prefix.render(WHEN, random=lambda: "abcdefghijk") == "abcdefghijk"


def test_error_output_type_needs_a_value_at_render_time() -> None:
    # GIVEN an error prefix
    prefix = KeyPrefix("errors/!{firehose:error-output-type}/", error_prefix=True)
    # WHEN it is rendered without saying which error output it is for
    # THEN that is an error, not a key with a hole in it
    with pytest.raises(PrefixError, match="error output type"):
        prefix.render(WHEN)


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("x/!{partitionKeyFromQuery:customer}/", "unknown expression"),
        ("x/!{firehose:stream-name}/", "unknown expression"),
        ("x/!{timestamp}/", "no namespace"),
        ("x/!{timestamp:}/", "empty timestamp pattern"),
        ("x/!{timestamp:EEE}/", "'EEE' is not supported"),
        ("x/!{timestamp:yyy}/", "'yyy' is not supported"),
        ("x/!{timestamp:MMM}/", "'MMM' is not supported"),
        ("x/!{timestamp:yyyy", "unterminated expression"),
        ("x/!{timestamp:'abc}/", "unterminated quoted literal"),
        ("x/!{timestamp:yyyy#}/", "reserved"),
        ("buffers/!{firehose:error-output-type}/", "only allowed in the error output prefix"),
    ],
)
def test_unsupported_expressions_fail_when_parsed(template: str, match: str) -> None:
    # GIVEN a template with an expression Firehose (or this stand-in) does not evaluate
    # WHEN it is parsed, as the assembler does at construction
    # THEN a PrefixError names the problem
    with pytest.raises(PrefixError, match=match):
        KeyPrefix(template)


def test_parse_date_pattern_rejects_an_unsupported_letter_by_name() -> None:
    with pytest.raises(PrefixError, match="'a'"):
        parse_date_pattern("HH a")


def test_object_name_is_stream_version_timestamp_uuid_extension() -> None:
    # GIVEN a stream, its version, the oldest arrival, an extension and an object id
    object_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    # WHEN the object name suffix is made
    name = object_name("sluice-0", 3, WHEN, ".json.gz", object_id)
    # THEN it follows Firehose's documented format
    assert name == "sluice-0-3-2025-03-04-09-05-07-12345678-1234-5678-1234-567812345678.json.gz"
