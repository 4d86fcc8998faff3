"""The moto launcher's middleware: DynamoDB requests one at a time, the rest concurrently."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from infrastructure.local.moto_service import SerializedDynamoDB


class SlowApp:
    """A WSGI app that takes a while per request and records how many ran at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        start_response("200 OK", [])
        return [b"ok"]


def run_concurrently(app: Any, target: str | None, count: int = 6) -> None:
    environ = {"HTTP_X_AMZ_TARGET": target} if target else {}
    threads = [
        threading.Thread(target=lambda: list(app(dict(environ), lambda *_: None)))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_dynamodb_requests_never_overlap() -> None:
    inner = SlowApp()
    run_concurrently(SerializedDynamoDB(inner), "DynamoDB_20120810.TransactWriteItems")
    assert inner.most == 1


def test_other_services_stay_concurrent() -> None:
    inner = SlowApp()
    run_concurrently(SerializedDynamoDB(inner), "AmazonSQS.ReceiveMessage")
    assert inner.most > 1
    inner = SlowApp()
    run_concurrently(SerializedDynamoDB(inner), None)  # S3: REST, no target header
    assert inner.most > 1
