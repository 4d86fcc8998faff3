"""The local Lambda runtime's crash chaos: the SDK call counter in each worker
(infrastructure.local.lambdas.sandbox), driven as botocore drives it, calls overlapping as when
the forwarder reads objects in a thread pool."""

from __future__ import annotations

from typing import NoReturn

import pytest

from infrastructure.local.lambdas import sandbox
from infrastructure.local.lambdas.sandbox import CRASH_EXIT_CODE, _SdkCallCounter


class Exited(Exception):
    """os._exit, caught: the test process must live on."""


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> None:
    def exit_(code: int) -> NoReturn:
        raise Exited(code)

    monkeypatch.setattr(sandbox.os, "_exit", exit_)


def test_after_phase_strikes_at_the_nth_answer_when_calls_overlap(exits: None) -> None:
    # GIVEN a crash armed after the 2nd call, and three calls begun before any is answered
    counter = _SdkCallCounter()
    counter.arm((2, "after"))
    for _ in range(3):
        counter._before_call()
    # WHEN the answers arrive  THEN the worker exits at the second one
    counter._after_call()
    with pytest.raises(Exited) as exited:
        counter._after_call()
    assert exited.value.args == (CRASH_EXIT_CODE,)


def test_before_phase_strikes_as_the_nth_call_begins(exits: None) -> None:
    counter = _SdkCallCounter()
    counter.arm((3, "before"))
    counter._before_call()
    counter._after_call()
    counter._before_call()
    with pytest.raises(Exited):
        counter._before_call()


def test_an_unarmed_invocation_never_exits(exits: None) -> None:
    # GIVEN an invocation that was armed and then one that was not (arm resets the counts)
    counter = _SdkCallCounter()
    counter.arm((1, "after"))
    counter.arm(None)
    # WHEN it makes calls  THEN nothing happens
    for _ in range(5):
        counter._before_call()
        counter._after_call()
    assert (counter.calls, counter.answered) == (5, 5)
