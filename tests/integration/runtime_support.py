"""Helpers for tests of the local Lambda runtime and what runs on it: test-double functions
(tests/integration/handlers/), waiting for a state, and runtimes stopped after each test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from infrastructure.local.lambdas.runtime import LambdaRuntime
from infrastructure.local.lambdas.workers import FunctionConfig

T = TypeVar("T")

HANDLERS = "tests.integration.handlers"


def function(
    name: str, module: str, *, timeout: float = 3.0, env: dict[str, str] | None = None
) -> FunctionConfig:
    return FunctionConfig(
        name=name,
        handler=f"{HANDLERS}.{module}.lambda_handler",
        timeout_seconds=timeout,
        memory_mb=256,
        environment=env or {},
    )


def wait_until(
    condition: Callable[[], T | None],
    *,
    what: str,
    timeout: float = 60.0,
    every: float = 0.05,
    progress: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds,
    naming `what` was awaited and, when given, `progress()` — where things stood then."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            where = f" ({progress()})" if progress is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{where}")
        time.sleep(every)


@pytest.fixture
def start_runtime() -> Iterator[Callable[..., LambdaRuntime]]:
    """`start_runtime(*functions, **options)`; every runtime started is stopped afterwards."""
    runtimes: list[LambdaRuntime] = []

    def start(*functions: FunctionConfig, **options: Any) -> LambdaRuntime:
        runtime = LambdaRuntime(functions, **options)
        runtimes.append(runtime)
        return runtime

    yield start
    for runtime in runtimes:
        runtime.stop()
