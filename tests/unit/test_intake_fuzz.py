"""Fuzzing the intake's request parser (transform/intake/requests.py) with seeded random input:
whatever a producer sends, the parser answers with a value or a Problem naming what is wrong —
never another exception — and what it accepts is safe to land. Seeded, so a failure repeats."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from transform.intake import keys, requests
from transform.intake.problems import Problem
from transform.payload_schemas import PayloadSchemas

T = TypeVar("T")
ROUNDS = 3000
NOW = datetime(2026, 12, 6, 21, 30, tzinfo=UTC)
ALPHABET = string.printable + "/\\.\x00\x7féü日本 %"


def answer(parse: Callable[[], T]) -> T | Problem:
    """What the parser gives: its value, or the Problem it raised (anything else propagates)."""
    try:
        return parse()
    except Problem as problem:
        return problem


def random_name(rng: random.Random) -> str:
    pieces = [
        "..",
        ".",
        "/",
        "//",
        "\\",
        "a",
        "ü",
        "日",
        "\x01",
        " ",
        "%2F",
        "x" * rng.randint(0, 600),
    ]
    return "".join(
        rng.choice(pieces) if rng.random() < 0.3 else rng.choice(ALPHABET)
        for _ in range(rng.randint(0, 40))
    )


@pytest.mark.parametrize("seed", range(3))
def test_any_name_is_accepted_safely_or_refused_with_a_problem(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        name = random_name(rng)
        accepted = answer(lambda: requests.check_name(name))  # noqa: B023  # called at once
        if isinstance(accepted, Problem):
            assert accepted.status == 400
            assert accepted.errors
            continue
        key = keys.file_key("acme", accepted, NOW)
        # THEN an accepted name stays under the producer's prefix, with no climbing or empty part
        parts = key.split("/")
        assert parts[:3] == ["acme", "api", "files"]
        assert ".." not in parts
        assert "." not in parts
        assert "" not in parts
        assert len(key.encode()) <= 1024


def random_line(rng: random.Random) -> bytes:
    choices = [
        lambda: json.dumps({"k": rng.random()}).encode(),
        lambda: json.dumps([rng.randint(0, 9)]).encode(),
        lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 30))),
        lambda: b"{" * rng.randint(1, 5),
        lambda: b"",
        lambda: json.dumps("text").encode(),
    ]
    return rng.choice(choices)()


@pytest.mark.parametrize("seed", range(3))
def test_any_body_of_events_parses_or_is_refused_with_a_problem(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(ROUNDS // 3):
        body = b"\n".join(random_line(rng) for _ in range(rng.randint(0, 8)))
        content_type = rng.choice(["application/json", "application/x-ndjson", "text/csv", ""])
        events = answer(
            lambda: requests.parse_events(
                body,  # noqa: B023  # the lambda is called at once, in this iteration
                content_type,  # noqa: B023  # as above
                "acme/api/events/x",
                PayloadSchemas(),
                max_events=5,
                max_errors=3,
            )
        )
        if isinstance(events, Problem):
            assert events.status in {400, 413, 415}
            assert len(events.errors) <= 3
            continue
        # THEN what it accepts is NDJSON of objects, one a line
        lines = events.body.decode().splitlines()
        assert len(lines) == events.count
        assert all(isinstance(json.loads(line), dict) for line in lines)
