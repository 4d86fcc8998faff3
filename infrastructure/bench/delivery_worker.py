"""A process that runs only delivery, driven by `infrastructure.bench.transfer` over a pipe.

Run as `python -m infrastructure.bench.delivery_worker` with the delivery function's environment
(the parent sets it: `SLUICE_*`, `AWS_ENDPOINT_URL_<SERVICE>`, credentials). It builds its
dependencies as the Lambda does (`delivery.handler.dependencies`), then answers one JSON request
per stdin line with one JSON reply per line on the original stdout:

    {"op": "deliver", "bucket": "...", "keys": ["buffers/…"], "ledger_table": "...",
     "measure": true}
    -> {"ok": true, "seconds": 1.2, "cpu_seconds": 0.8, "outcomes": ["delivered"],
        "dynamodb_seconds": 0.3,
        "dynamodb_by_operation": {"TransactWriteItems": 0.2, ...},
        "baseline_rss": ..., "peak_reset": true, "hwm": ..., "rss": ...}
    {"op": "quit"}

With `measure`, the process collects garbage and resets its own peak (`VmHWM`) just before
delivering, so the reply's `hwm - baseline_rss` is what this delivery added on top of a warm
process. Delivery's own log lines (Powertools writes to stdout) are sent to stderr, so they
can never be mistaken for a reply. Its own process: the parent samples its memory alone.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys
import time
import traceback
from typing import Any, TextIO

from infrastructure.bench.rss import read_memory, reset_peak


def _protocol_stream() -> TextIO:
    """The original stdout for replies; fd 1 becomes stderr for everything else."""
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return replies


class _DynamoTimer:
    """Seconds spent in DynamoDB calls (the ledger), from botocore's call events: on the local
    stack that is moto, far slower than DynamoDB, so the parent reports it beside the time."""

    def __init__(self, client: Any) -> None:
        self.by_operation: dict[str, float] = {}
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

    @property
    def seconds(self) -> float:
        return sum(self.by_operation.values())

    def _before(self, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, context: dict[str, Any], model: Any, **_: Any) -> None:
        started = context.get("bench_started")
        if started is not None:
            elapsed = time.perf_counter() - started
            self.by_operation[model.name] = self.by_operation.get(model.name, 0.0) + elapsed


def main() -> None:
    replies = _protocol_stream()
    # Imported after the redirection: Powertools reads its settings from the environment here.
    from delivery import handler  # noqa: PLC0415  # see above
    from delivery.delivering import deliver_window  # noqa: PLC0415  # see above
    from delivery.ledger import Ledger  # noqa: PLC0415  # see above
    from transform import clients  # noqa: PLC0415  # see above

    deps = handler.dependencies()
    timer = _DynamoTimer(clients.dynamodb())
    pid = os.getpid()
    replies.write(json.dumps({"ready": True, "pid": pid}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            run = dataclasses.replace(
                deps,
                ledger=Ledger(
                    clients.dynamodb(), request["ledger_table"], deps.tunables.ledger_ttl_seconds
                ),
            )
            measure = bool(request.get("measure"))
            reply: dict[str, Any] = {"ok": True}
            if measure:
                gc.collect()
                reply["peak_reset"] = reset_peak(pid)
                reply["baseline_rss"] = read_memory(pid).rss
            timer.by_operation.clear()
            started, cpu = time.perf_counter(), time.process_time()
            outcomes = [
                deliver_window(request["bucket"], key, run).outcome for key in request["keys"]
            ]
            reply["seconds"] = time.perf_counter() - started
            reply["cpu_seconds"] = time.process_time() - cpu
            reply["outcomes"] = outcomes
            reply["dynamodb_seconds"] = timer.seconds
            reply["dynamodb_by_operation"] = timer.by_operation
            memory = read_memory(pid)
            reply["hwm"], reply["rss"] = memory.hwm, memory.rss
        except Exception as err:  # noqa: BLE001  # reported to the parent, which raises
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            traceback.print_exc()
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
