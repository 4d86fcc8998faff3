"""Time arguments of operator commands (infrastructure.cli.times)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

from infrastructure.cli.times import TimeArgumentError, parse_time, time_argument

NOW = datetime(2026, 11, 25, 15, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        (" 2H ", timedelta(hours=2)),
        ("0m", timedelta(0)),
        ("now", timedelta(0)),
    ],
)
def test_a_duration_counts_back_from_now(text: str, ago: timedelta) -> None:
    # GIVEN a duration WHEN parsed THEN it is that long before now, in UTC
    assert parse_time(text, NOW) == NOW - ago
    assert parse_time(text, NOW).tzinfo is UTC


def test_a_naive_iso_time_means_utc() -> None:
    # GIVEN an ISO-8601 time without an offset WHEN parsed THEN it is read as UTC
    assert parse_time("2026-11-25T14:00", NOW) == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert parse_time("2026-11-25", NOW) == datetime(2026, 11, 25, tzinfo=UTC)


def test_an_offset_or_z_is_converted_to_utc() -> None:
    # GIVEN times with an offset, or Z WHEN parsed THEN they are the same moments in UTC
    expected = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
    assert parse_time("2026-11-25T14:00+01:00", NOW) == expected
    assert parse_time("2026-11-25T13:00Z", NOW) == expected
    assert parse_time("2026-11-25T14:00+01:00", NOW).tzinfo is UTC


def test_a_naive_now_is_taken_as_utc() -> None:
    # GIVEN a naive `now` WHEN a duration is parsed THEN the result is aware UTC
    naive = datetime(2026, 11, 25, 15, 0)  # the case under test: no tzinfo
    assert parse_time("1h", naive) == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert parse_time("now", naive).tzinfo is UTC


@pytest.mark.parametrize("text", ["yesterday", "2h30", "-2h", "1w", "", "2026-13-01"])
def test_a_bad_value_is_refused_naming_it(text: str) -> None:
    # GIVEN something neither ISO-8601 nor a duration WHEN parsed THEN the error names it
    with pytest.raises(TimeArgumentError, match=f"invalid time {text!r}"):
        parse_time(text, NOW)


def test_argparse_reports_the_option_and_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a parser with a time option
    parser = argparse.ArgumentParser(prog="sluice reconcile")
    parser.add_argument("--since", type=time_argument(NOW))
    # WHEN it parses a good value THEN the option holds the moment
    assert parser.parse_args(["--since", "90m"]).since == NOW - timedelta(minutes=90)
    # WHEN it parses a bad one THEN it exits 2 naming the option and the value
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--since", "soon"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --since: invalid time 'soon'" in error
