"""moto server for the benchmarks, with TransactWriteItems that backs up items, not tables.

moto 5.2.5's `DynamoDBBackend.transact_write_items` deep-copies the *whole table once per item*
of the transaction, to roll back on failure (`moto/dynamodb/models/__init__.py`). Delivery claims
files 100 to a transaction, so each claim costs 100 copies of a table that grows with every file
delivered: quadratic. Measured here: the transactions of one 2,000-file window took 7-20 s
each, 197 s in all; a 128 MiB window (~17,000 files) would take hours. That is moto, not
DynamoDB, and would swamp what the benchmarks measure.

This runs `infrastructure.local.moto_service` unchanged but for that: the table copies become
no-ops, and instead the items the transaction names are backed up before it runs and restored
if it raises. Same outcome (all or nothing, DynamoDB requests serialised by moto_service), at
the cost of a few item copies.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infrastructure.local.moto_service import MotoServer, free_port, main, wait_until_ready


def patch_transactions() -> None:
    """In the moto server process: item-level backups for TransactWriteItems (see above)."""
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


def start(log_path: Path) -> MotoServer:
    """Start this server on a free loopback port in its own process group (as `start_moto`)."""
    port = free_port()
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


if __name__ == "__main__":
    patch_transactions()
    main()
