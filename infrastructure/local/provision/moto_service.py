"""moto in server mode for the local stack and the tests: a subprocess on 127.0.0.1.

A launcher of our own: DynamoDB requests one at a time, S3 events with `versionId` and `sequencer`,
moto's costs that grow with the data taken out or with the size of an item. Spec:
docs/local-stack.md, `provision/moto_service.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from infrastructure.local.lifeline import stop_process_group, watch_parent

STARTUP_TIMEOUT_SECONDS: Final = 30.0
DYNAMODB_TARGET_PREFIX: Final = "DynamoDB_"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerializedDynamoDB:
    """WSGI middleware: DynamoDB requests (by their `X-Amz-Target`) one at a time."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            return self._app(environ, start_response)
        with self._lock:
            # The body is produced inside the lock: moto may do its work lazily while iterating.
            return list(self._app(environ, start_response))


def aws_shaped_s3_events() -> None:
    """Add `versionId` (versioned buckets) and `sequencer` to the S3 events moto sends."""
    from moto.s3 import notifications  # noqa: PLC0415  # only the server process imports moto

    original = notifications._get_s3_event
    sequence = itertools.count(1)
    lock = threading.Lock()

    def event(event_name: str, bucket: Any, key: Any, notification_id: str) -> Any:
        body = original(event_name, bucket, key, notification_id)
        described = body["Records"][0]["s3"]["object"]
        with lock:
            described["sequencer"] = f"{next(sequence):018X}"
        if getattr(bucket, "is_versioned", False) and key.version_id:
            described["versionId"] = key.version_id
        return body

    notifications._get_s3_event = event  # send_event looks the function up at each call


def linear_dynamodb_transactions() -> None:
    """TransactWriteItems that backs up the items it names, not whole tables.

    moto 5.2.5's `DynamoDBBackend.transact_write_items` deep-copies the *whole table once per
    item* of the transaction, to roll back on failure (`moto/dynamodb/models/__init__.py`).
    Delivery claims files 100 to a transaction, so each claim costs 100 copies of a ledger that
    grows with every file delivered: quadratic. Measured here: the transactions of one
    2,000-file window took 7-20 s each, 197 s in all, once the ledger held a few windows; a
    128 MiB window (~17,000 files) would take hours. That is moto, not DynamoDB.

    Here the table copies are no-ops; instead the items the transaction names are backed up
    before it runs and restored if it raises. Same outcome, all or nothing (DynamoDB requests
    are serialised by `SerializedDynamoDB`), at the cost of a few item copies.
    """
    from moto.dynamodb import models  # noqa: PLC0415  # only the server process imports moto

    backend: Any = models.DynamoDBBackend
    original: Callable[..., None] = backend.transact_write_items
    table_class: type = getattr(models, "Table")  # noqa: B009  # moto does not export it

    class _NoTableCopies:
        """Stands in for the `copy` module inside moto's DynamoDB models: tables are not copied
        (their rollback becomes a no-op); anything else is."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            if isinstance(value, table_class):
                return value
            return copy.deepcopy(value, memo)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key")
            if key is None and "Item" in op:
                names = [table.hash_key_attr]
                if table.range_key_attr is not None:
                    names.append(table.range_key_attr)
                key = {name: op["Item"][name] for name in names if name in op["Item"]}
            if not key:
                continue
            with contextlib.suppress(Exception):  # malformed: moto's own checks will say so
                current = self.get_item(table.name, key)
                backups.append(
                    (table.name, key, None if current is None else copy.deepcopy(current))
                )
        try:
            original(self, transact_items)
        except BaseException:
            for table_name, key, item in reversed(backups):
                if item is None:
                    with contextlib.suppress(Exception):
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, item.to_json()["Attributes"])
            raise

    setattr(models, "copy", _NoTableCopies)  # noqa: B010  # moto uses only its deepcopy there
    backend.transact_write_items = transact_write_items


def faster_sqs() -> None:
    """Take the per-message work out of moto's SQS requests that need none.

    moto 5.2.5's SQS reads `unix_time_millis()` (datetime arithmetic, ~11 µs a call here) twice
    for every message in the queue whenever it lists the visible ones; and ReceiveMessage checks
    each message it returns against the queue's retention period by building *all* the queue's
    attributes, three of which count the queue's messages. So a receive of 10 scanned the queue
    some 30 times: with 1,000 messages waiting, a receive and a delete of 10 took 971 ms of
    moto's CPU, 15 ms with these changes (`docs/scripts/measure_moto_sqs.py`); a burst deepened
    the ingest queue faster than the forwarder could drain it. Here the clock is `time.time()`
    (the same value; a given datetime is still converted by moto's own function) and the
    retention check reads the retention period alone.

    SendMessage, which every S3 event notification is, also built all the queue's attributes to
    read one (ContentBasedDeduplication): three scans of the queue per landed file, so the
    deeper a burst drove the ingest queue, the slower moto took the next landing (a send with
    2,000 messages waiting: 37.5 ms of moto's CPU, 1.0 ms with this change; same script). While
    a message is sent, the queue's attributes are that one alone (none for a standard queue).

    And a correctness fix: DeleteMessage rebuilds the queue's message list and rebinds it without
    the lock SendMessage appends under, so a message sent during a delete could be appended to
    the old list and lost, silently (2 of 15,000 files' S3 events in one `make bench-e2e` burst,
    once sends stopped scanning the queue). Here a delete holds that lock.
    """
    from moto.sqs import models  # noqa: PLC0415  # only the server process imports moto

    names = vars(models)  # moto's SQS looks its clock up in its module globals at each call
    moto_unix_time = names["unix_time"]

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(moto_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention_seconds = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_seconds + message.sent_timestamp / 1000 > unix_time())

    names["unix_time"] = unix_time
    names["unix_time_millis"] = unix_time_millis
    backend: Any = models.SQSBackend
    backend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period

    queue: Any = models.Queue
    every_attribute = queue.attributes  # moto's property: counts the queue's messages
    sending = threading.local()  # the server takes each request on a thread of its own
    moto_send = backend.send_message

    def attributes(self: Any) -> dict[str, Any]:
        if not getattr(sending, "now", False):
            return dict(every_attribute.fget(self))
        if not self.fifo_queue:
            return {}
        return {
            "ContentBasedDeduplication": "true" if self.content_based_deduplication else "false"
        }

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        sending.now = True
        try:
            return moto_send(self, *args, **kwargs)
        finally:
            sending.now = False

    moto_delete = queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:  # what `add_message` appends under
            moto_delete(self, receipt_handle)

    queue.attributes = property(attributes)
    backend.send_message = send_message
    queue.delete_message = delete_message


SIZE_FILTERS: Final = ("ObjectSizeGreaterThan", "ObjectSizeLessThan")


def lifecycle_size_filters() -> None:
    """Keep lifecycle rules' object-size filters through a put and a get (docs/local-stack.md)."""
    from moto.s3 import models, responses  # noqa: PLC0415  # only the server process imports moto

    bucket: Any = models.FakeBucket
    response: Any = responses.S3Response
    set_lifecycle = bucket.set_lifecycle
    get_bucket_lifecycle = response.get_bucket_lifecycle

    def sizes(filters: Any) -> dict[str, int]:
        if not isinstance(filters, dict):
            return {}
        return {name: int(filters[name]) for name in SIZE_FILTERS if name in filters}

    def keep_sizes(self: Any, rules: list[dict[str, Any]]) -> None:
        set_lifecycle(self, rules)
        for stored, rule in zip(self.rules, rules, strict=True):
            filters = rule.get("Filter") or {}
            stored.size_filters = (sizes(filters), sizes(filters.get("And")))

    def give_sizes_back(self: Any) -> Any:
        rules = self.backend.get_bucket_lifecycle(self.bucket_name)
        serialized = self.serialized

        def with_sizes(result: Any) -> Any:
            for answer, rule in zip(result.result["Rules"], rules, strict=True):
                top, under_and = getattr(rule, "size_filters", ({}, {}))
                if top or under_and:
                    answer.setdefault("Filter", {}).update(top)
                if under_and:
                    answer["Filter"].setdefault("And", {}).update(under_and)
            return serialized(result)

        self.serialized = with_sizes
        try:
            return get_bucket_lifecycle(self)
        finally:
            del self.serialized

    bucket.set_lifecycle = keep_sizes
    response.get_bucket_lifecycle = give_sizes_back


def cached_backend_lookup() -> None:
    """moto finds the backend of every request by listing its modules and matching ~200 URL
    patterns (~8 % of its CPU under load); the answer depends on the host name only."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: PLC0415

    lookup = DomainDispatcherApplication.get_backend_for_host
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in found:
            found[host] = lookup(self, host)
        return found[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]  # the patch


def faster_dynamodb_projection() -> None:
    """A projection of top-level attributes copies them from the item, converting nothing.

    moto 5.2.5's `Item.project` converts the *whole item* to plain JSON once per projected
    attribute (`moto/dynamodb/models/dynamo_type.py`), then serializes the result back: redrive's
    sweep reads 11 attributes of each window it looks at, so a BatchGetItem of 100 windows took
    ~80 ms of moto's CPU, more than reading the whole items. Nested paths and list indexes take
    moto's own way; `tests/unit/test_moto_service.py` checks both give the same items.
    """
    from moto.dynamodb.models import dynamo_type  # noqa: PLC0415  # only the server imports moto

    item_class: Any = dynamo_type.Item
    project = item_class.project

    def project_top_level(self: Any, projection_expressions: list[list[str]]) -> Any:
        names = [path[0] for path in projection_expressions if len(path) == 1]
        if len(names) < len(projection_expressions) or any("[" in name for name in names):
            return project(self, projection_expressions)
        attrs = {name: copy.deepcopy(self.attrs[name]) for name in names if name in self.attrs}
        return item_class(hash_key=self.hash_key, range_key=self.range_key, attrs=attrs)

    item_class.project = project_top_level


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    process: subprocess.Popen[bytes]
    endpoint: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the server and anything it started (its process group); idempotent."""
        if self.process.poll() is None:
            stop_process_group(self.process.pid)
        self.process.wait()


def start_moto(log_path: Path, *, port: int | None = None) -> MotoServer:
    """Start moto on 127.0.0.1 (`port`, or a free one) in its own process group, logging to
    `log_path`; return once it answers, or raise RuntimeError naming the log."""
    port = port or free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell
            [sys.executable, "-m", __name__, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() stops its children too
        )
    server = MotoServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until_ready(server: MotoServer, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not server.running():
            raise RuntimeError(
                f"moto server exited with {server.process.returncode}; see {server.log_path}"
            )
        try:
            urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1).close()  # noqa: S310  # loopback http
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"moto server not ready on {server.endpoint} after {timeout:.0f} s; "
                    f"see {server.log_path}"
                ) from None
            time.sleep(0.1)
        else:
            return


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415  # only the server process pays for moto
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple  # noqa: PLC0415  # as above

    parser = argparse.ArgumentParser(description="moto server, DynamoDB serialized")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds queue URLs with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    watch_parent()  # its own session: nothing else ends it if the stack is killed
    aws_shaped_s3_events()
    faster_sqs()
    linear_dynamodb_transactions()
    faster_dynamodb_projection()
    lifecycle_size_filters()
    cached_backend_lookup()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        SerializedDynamoDB(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
