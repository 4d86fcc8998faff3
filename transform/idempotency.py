"""The forwarder's per-file idempotency records in DynamoDB (DESIGN §4a).

A record is IN_PROGRESS, expiring with the invocation that holds it, until that file's
PutRecordBatch entry has succeeded; then COMPLETED until its TTL. If the send fails the record is
removed, so the message's redelivery sends the file again. If the invocation dies between send
and COMPLETED, the IN_PROGRESS record expires with it and the redelivery sends the file again:
a duplicate in Firehose, which delivery drops (rule 1), never a loss.

A record of a landed version (not of a replay) also says what landed and when: the S3 event's
time as `landed_hour` (`YYYY-MM-DDTHH`, UTC) and `landed_at_ms`, and the version's key, id, size
and ETag. `landed_hour` is the key of the table's index `landed-hour`, from which reconcile and
the daily report read the files that landed in an hour without listing the landing bucket's
history. A file the forwarder holds back without claiming it (too large, its version gone) gets
a HELD record with its `held_reason`, so that the index lists it too; HELD is no claim: a later
claim of the same id takes its place.

Powertools' `idempotent_function` keys one call to one record; here one PutRecordBatch call
completes many records, so the same record layout (id, status, expiration,
in_progress_expiration) is written directly. Completion is batched (BatchWriteItem, 25 items a
call): the claim is ours, so no condition is needed to complete or release it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(child=True)

IDEMPOTENCY_KEY: Final = "id"
IDEMPOTENCY_TTL_ATTRIBUTE: Final = "expiration"
IN_PROGRESS: Final = "IN_PROGRESS"
COMPLETED: Final = "COMPLETED"
HELD: Final = "HELD"
"""Not a claim: a landed file the forwarder quarantined (its reason file says why)."""
HELD_REASON: Final = "held_reason"
BATCH_WRITE_LIMIT: Final = 25
BATCH_WRITE_ATTEMPTS: Final = 5
LANDED_INDEX: Final = "landed-hour"
LANDED_HOUR: Final = "landed_hour"
"""The index of landed files by hour (Terraform: dynamodb.tf; locally:
infrastructure/local/provision/resources.py)."""


class LandedFile(NamedTuple):
    """A landed version as the ingest index keeps it."""

    key: str
    version_id: str
    size: int
    etag: str
    landed_at_ms: int

    def attributes(self) -> dict[str, dict[str, str]]:
        return {
            LANDED_HOUR: {"S": landed_hour(self.landed_at_ms / 1000)},
            "landed_at_ms": {"N": str(self.landed_at_ms)},
            "object_key": {"S": self.key},
            "version_id": {"S": self.version_id},
            "size": {"N": str(self.size)},
            "etag": {"S": self.etag},
        }


def landed_hour(epoch_seconds: float) -> str:
    """The index's partition of a moment: `YYYY-MM-DDTHH`, UTC."""
    return f"{datetime.fromtimestamp(epoch_seconds, UTC):%Y-%m-%dT%H}"


class Claim(Enum):
    CLAIMED = "claimed"
    """Ours to send."""
    COMPLETED = "completed"
    """Already sent by an earlier invocation: a duplicate event."""
    BUSY = "busy"
    """Another live invocation is sending it: retry the message later."""


class IdempotencyStore:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._clock = clock

    def claim(self, file_id: str, holds_until_ms: int, landed: LandedFile | None = None) -> Claim:
        """Mark `file_id` IN_PROGRESS until `holds_until_ms` (the invocation's deadline)."""
        now = self._clock()
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    IDEMPOTENCY_KEY: {"S": file_id},
                    "status": {"S": IN_PROGRESS},
                    IDEMPOTENCY_TTL_ATTRIBUTE: {"N": str(int(now) + self._ttl_seconds)},
                    "in_progress_expiration": {"N": str(holds_until_ms)},
                    **(landed.attributes() if landed else {}),
                },
                # Free if absent, expired (TTL deletion lags by up to days), an IN_PROGRESS
                # whose holder's invocation has ended, or only a HELD record (no claim).
                ConditionExpression=(
                    "attribute_not_exists(#id) OR #exp < :now OR #status = :held "
                    "OR (#status = :in_progress AND in_progress_expiration < :now_ms)"
                ),
                ExpressionAttributeNames={
                    "#id": IDEMPOTENCY_KEY,
                    "#exp": IDEMPOTENCY_TTL_ATTRIBUTE,
                    "#status": "status",
                },
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now))},
                    ":now_ms": {"N": str(int(now * 1000))},
                    ":in_progress": {"S": IN_PROGRESS},
                    ":held": {"S": HELD},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            existing: dict[str, Any] = err.response.get("Item") or self._get(file_id)  # type: ignore[assignment]  # botocore types the error Item loosely
            status = existing.get("status", {}).get("S")
            return Claim.COMPLETED if status == COMPLETED else Claim.BUSY
        return Claim.CLAIMED

    def complete(
        self, file_ids: Iterable[str], landed: Mapping[str, LandedFile | None] | None = None
    ) -> list[str]:
        """Mark claims COMPLETED (keeping what `landed` says of each); returns the ids that could
        not be marked (logged, not fatal)."""
        expiration = str(int(self._clock()) + self._ttl_seconds)
        landed = landed or {}
        requests = []
        for file_id in file_ids:
            file = landed.get(file_id)
            item = {
                IDEMPOTENCY_KEY: {"S": file_id},
                "status": {"S": COMPLETED},
                IDEMPOTENCY_TTL_ATTRIBUTE: {"N": expiration},
                **(file.attributes() if file else {}),
            }
            requests.append({"PutRequest": {"Item": item}})
        return self._batch_write(requests)

    def record_held(self, file_id: str, landed: LandedFile, reason: str) -> None:
        """Put a HELD record of a landed file the forwarder quarantined without claiming it, so
        the index of landed files lists it. Never over a claim (a file claimed or sent before
        its version went away keeps its record), and best effort: the reason file is what holds
        the file back; a failed write is logged, and the file goes unlisted by the index."""
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    IDEMPOTENCY_KEY: {"S": file_id},
                    "status": {"S": HELD},
                    HELD_REASON: {"S": reason},
                    IDEMPOTENCY_TTL_ATTRIBUTE: {"N": str(int(self._clock()) + self._ttl_seconds)},
                    **landed.attributes(),
                },
                ConditionExpression="attribute_not_exists(#id) OR #status = :held",
                ExpressionAttributeNames={"#id": IDEMPOTENCY_KEY, "#status": "status"},
                ExpressionAttributeValues={":held": {"S": HELD}},
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                logger.warning("held file not recorded", file_id=file_id, error=str(err))

    def release(self, file_ids: Iterable[str]) -> list[str]:
        """Remove claims whose send failed, so a redelivery sends them again."""
        requests = [
            {"DeleteRequest": {"Key": {IDEMPOTENCY_KEY: {"S": file_id}}}} for file_id in file_ids
        ]
        return self._batch_write(requests)

    def _get(self, file_id: str) -> dict[str, Any]:
        response = self._dynamodb.get_item(
            TableName=self._table, Key={IDEMPOTENCY_KEY: {"S": file_id}}, ConsistentRead=True
        )
        return dict(response.get("Item", {}))

    def _batch_write(self, requests: list[dict[str, Any]]) -> list[str]:
        unwritten: list[str] = []
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            pending = requests[start : start + BATCH_WRITE_LIMIT]
            for attempt in range(BATCH_WRITE_ATTEMPTS):
                unprocessed: Any
                try:
                    response = self._dynamodb.batch_write_item(
                        RequestItems={self._table: pending}  # type: ignore[dict-item]  # shapes built above
                    )
                    unprocessed = response.get("UnprocessedItems", {})
                except ClientError as err:
                    logger.warning("idempotency batch write failed", error=str(err))
                    unprocessed = {self._table: pending}
                pending = list(unprocessed.get(self._table, []))
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            unwritten.extend(_request_id(request) for request in pending)
        if unwritten:
            logger.warning("idempotency records left as they were", file_ids=unwritten)
        return unwritten


def _request_id(request: dict[str, Any]) -> str:
    if "PutRequest" in request:
        return str(request["PutRequest"]["Item"][IDEMPOTENCY_KEY]["S"])
    return str(request["DeleteRequest"]["Key"][IDEMPOTENCY_KEY]["S"])
