"""Firehose's S3 key namespaces: prefix expressions and the object name suffix.

Each test of an emulated AWS behaviour cites, in its docstring, the AWS page that documents it;
where it checks a choice of the stand-in that AWS does not document, the docstring says so.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from infrastructure.local.firehose.prefixes import (
    KeyPrefix,
    PrefixError,
    object_name,
    parse_date_pattern,
)
from infrastructure.tunables import load_tunables

WHEN = datetime(2025, 3, 4, 9, 5, 7, tzinfo=UTC)


def test_repository_prefixes_render_dt_and_hour() -> None:
    """Sluice's configured prefixes evaluate as documented: timestamp patterns in UTC, and
    !{firehose:error-output-type} to processing-failed for a data transformation failure.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    """
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
    """!{timestamp:...} values are Java DateTimeFormatter patterns; text in single quotes is
    literal. The last two cases (no timestamp expression) render as given, the stand-in's choice:
    AWS appends !{timestamp:yyyy/MM/dd/HH/} to such a Prefix (s3-prefixes.html, "Semantic rules").
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    https://docs.oracle.com/javase/8/docs/api/java/time/format/DateTimeFormatter.html
    """
    # GIVEN a prefix with Java DateTimeFormatter patterns, quoted literals and punctuation
    # WHEN it is rendered
    rendered = KeyPrefix(template).render(WHEN)
    # THEN fields are formatted as Java would, and quoted text is copied without its quotes
    assert rendered == expected


def test_every_timestamp_expression_is_the_same_instant() -> None:
    """If the timestamp namespace is used more than once in a prefix, every instance evaluates to
    the same instant.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    """
    # GIVEN a prefix that uses the timestamp namespace twice
    prefix = KeyPrefix("!{timestamp:yyyy}/!{timestamp:yyyy-MM-dd-HH}/")
    # WHEN it is rendered
    # THEN both expressions evaluate to the one instant given
    assert prefix.render(WHEN) == "2025/2025-03-04-09/"


def test_random_string_is_eleven_alphanumerics_each_time() -> None:
    """!{firehose:random-string} evaluates to a random string of 11 characters. The alphabet
    (letters and digits) is the stand-in's: AWS gives none (its examples are hex, one with a '-').
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    """
    # GIVEN a prefix with the random-string expression
    prefix = KeyPrefix("r=!{firehose:random-string}/")
    # WHEN it is rendered twice
    first, second = prefix.render(WHEN), prefix.render(WHEN)
    # THEN each is 11 letters or digits, drawn afresh
    assert re.fullmatch(r"r=[A-Za-z0-9]{11}/", first)
    assert re.fullmatch(r"r=[A-Za-z0-9]{11}/", second)
    assert first != second


def test_random_string_twice_in_one_prefix_is_two_strings() -> None:
    """If random-string is used more than once in the same expression, every instance evaluates to
    a new random string.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    """
    # GIVEN a prefix with the random-string expression twice, and a source of distinct strings
    draws = iter(["aaaaaaaaaaa", "bbbbbbbbbbb"])
    prefix = KeyPrefix("!{firehose:random-string}/!{firehose:random-string}/")
    # WHEN it is rendered once
    rendered = prefix.render(WHEN, random=lambda: next(draws))
    # THEN each instance drew its own string
    assert rendered == "aaaaaaaaaaa/bbbbbbbbbbb/"


def test_random_string_source_is_injectable() -> None:
    prefix = KeyPrefix("!{firehose:random-string}")
    assert prefix.render(WHEN, random=lambda: "abcdefghijk") == "abcdefghijk"


def test_error_output_type_is_one_string_at_every_instance() -> None:
    """!{firehose:error-output-type} evaluates to the failure's type (processing-failed for a
    transformation failure); used more than once, every instance evaluates to the same string.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    """
    # GIVEN an error prefix that uses the error output type twice
    prefix = KeyPrefix(
        "e/!{firehose:error-output-type}/!{timestamp:yyyy}/!{firehose:error-output-type}",
        error_prefix=True,
    )
    # WHEN it is rendered for a processing failure
    rendered = prefix.render(WHEN, error_output_type="processing-failed")
    # THEN both instances are that type
    assert rendered == "e/processing-failed/2025/processing-failed"


def test_error_output_type_needs_a_value_at_render_time() -> None:
    """The stand-in's guard, not an AWS behaviour: Firehose always knows why a record failed."""
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
    """Documented: the firehose namespace has only error-output-type and random-string, Prefix can't
    contain error-output-type, and `!{` only opens an expression. The stand-in's: rejecting dynamic
    partitioning namespaces and Java letters outside its subset, and doing so at parse time.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    """
    # GIVEN a template with an expression Firehose (or this stand-in) does not evaluate
    # WHEN it is parsed, as the assembler does at construction
    # THEN a PrefixError names the problem
    with pytest.raises(PrefixError, match=match):
        KeyPrefix(template)


def test_parse_date_pattern_rejects_an_unsupported_letter_by_name() -> None:
    with pytest.raises(PrefixError, match="'a'"):
        parse_date_pattern("HH a")


def test_object_name_is_stream_version_timestamp_uuid_extension() -> None:
    """The suffix is <stream name>-<stream version>-<year>-<month>-<day>-<hour>-<minute>-<second>-
    <uuid><file extension>, appended to the evaluated prefix.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html
    """
    # GIVEN a stream, its version, the oldest arrival, an extension and an object id
    object_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    # WHEN the object name suffix is made
    name = object_name("sluice-0", 3, WHEN, ".json.gz", object_id)
    # THEN it follows Firehose's documented format
    assert name == "sluice-0-3-2025-03-04-09-05-07-12345678-1234-5678-1234-567812345678.json.gz"
