"""Time arguments of operator commands: an ISO-8601 moment, or a duration ago.

    2026-11-25T14:00        naive means UTC
    2026-11-25T14:00+01:00  any offset, converted to UTC
    30s  90m  2h  1d        that long before now
    now

Used as `type=time_argument(now)` in argparse, so a bad value is reported as argparse reports
any bad argument (naming the option and the value), with exit status 2.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

_DURATION: Final = re.compile(r"(\d+)([smhd])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class TimeArgumentError(argparse.ArgumentTypeError, ValueError):
    """A time argument is neither ISO-8601 nor a duration; the message names the value."""


def parse_time(text: str, now: datetime) -> datetime:
    """`text` as an aware UTC datetime; durations count back from `now` (naive means UTC)."""
    value = text.strip()
    if value.lower() == "now":
        return _utc(now)
    duration = _DURATION.fullmatch(value.lower())
    if duration:
        amount, unit = int(duration.group(1)), duration.group(2)
        return _utc(now) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TimeArgumentError(
            f"invalid time {text!r}: expected ISO-8601 (2026-11-25T14:00, naive means UTC), "
            "a duration ago (30s, 90m, 2h, 1d) or 'now'"
        ) from None
    return _utc(moment)


def time_argument(now: datetime) -> Callable[[str], datetime]:
    """An argparse `type=` that parses against one `now` for the whole command line."""

    def parse(text: str) -> datetime:
        return parse_time(text, now)

    parse.__name__ = "time"  # argparse names the type in its fallback message
    return parse


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
