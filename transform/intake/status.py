"""`GET /v1/files/{file_id}`: where a producer's file is now, from the records the pipeline
keeps (docs/intake.md): landed (the intake's own record), forwarded (the forwarder's
idempotency record), claimed by a window and that window's state (the ledger), and the window
manifest that lists it once delivered. A file of another producer is answered as unknown.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from delivery.layout import window_manifest_key, window_name
from delivery.ledger import Ledger, WindowState
from transform.intake.landing import Landed
from transform.intake.problems import Problem

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LANDED_PREFIX: Final = "landed#"
"""The intake's record of a file it landed, in the idempotency table, under `landed#<file_id>`."""


class FileRecords(NamedTuple):
    dynamodb: DynamoDBClient
    idempotency_table: str
    ledger: Ledger
    archive_prefix: str
    file_extension: str
    ttl_seconds: int

    def remember(self, producer: str, landed: Landed) -> None:
        """Record what the intake landed, so its status is known before the forwarder runs."""
        now = time.time()
        self.dynamodb.put_item(
            TableName=self.idempotency_table,
            Item={
                "id": {"S": LANDED_PREFIX + landed.file_id},
                "producer": {"S": producer},
                "object_key": {"S": landed.key},
                "version_id": {"S": landed.version_id},
                "sha256": {"S": landed.sha256},
                "size": {"N": str(landed.size)},
                "landed_at_ms": {"N": str(int(now * 1000))},
                "expiration": {"N": str(int(now) + self.ttl_seconds)},
            },
        )

    def status(self, producer: str, file_id: str) -> dict[str, Any]:
        landed = self._item(LANDED_PREFIX + file_id)
        forwarded = self._item(file_id)
        key = _text(landed, "object_key") or _text(forwarded, "object_key")
        if key is None or not key.startswith(f"{producer}/"):
            raise Problem(
                404,
                "no-such-file",
                "No such file",
                f"none of your files has file_id {file_id[:80]!r} in the last "
                f"{self.ttl_seconds // 86400} days",
            )
        answer: dict[str, Any] = {
            "file_id": file_id,
            "key": key,
            "version_id": _text(landed, "version_id") or _text(forwarded, "version_id"),
            "stage": "landed",
            "forwarded": forwarded is not None and _text(forwarded, "status") == "COMPLETED",
        }
        if answer["forwarded"]:
            answer["stage"] = "forwarded"
        owner = self.ledger.owners([file_id]).get(file_id)
        if owner is None:
            return answer
        record = self.ledger.get_window(owner)
        answer["window"] = {"id": owner, "state": None if record is None else str(record.state)}
        if record is None:
            answer["stage"] = "claimed"
            return answer
        excluded = [x for x in record.exclusions if x.file_id == file_id]
        if excluded:
            answer.update(stage="excluded", reason=excluded[0].reason, detail=excluded[0].detail)
        elif record.state is WindowState.DELIVERED:
            name = window_name(record.staged_key, self.file_extension)
            answer.update(
                stage="delivered",
                manifest=window_manifest_key(self.archive_prefix, name),
                delivered_at_ms=record.delivered_at_ms,
            )
        else:
            answer["stage"] = "parked" if record.state is WindowState.PARKED else "claimed"
        return answer

    def _item(self, key: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(
            TableName=self.idempotency_table, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return dict(item) if item else None


def _text(item: dict[str, Any] | None, name: str) -> str | None:
    if item is None or name not in item:
        return None
    return str(item[name]["S"])
