"""The forwarder's per-file idempotency records in DynamoDB (DESIGN §4a).

A record is IN_PROGRESS, expiring with the invocation that holds it, until that file's
PutRecordBatch entry has succeeded; then COMPLETED until its TTL. If the send fails the record is
removed, so the message's redelivery sends the file again. If the invocation dies between send
and COMPLETED, the IN_PROGRESS record expires with it and the redelivery sends the file again:
a duplicate in Firehose, which delivery drops (rule 1), never a loss.

Powertools' `idempotent_function` keys one call to one record; here one PutRecordBatch call
completes many records, so the same record layout (id, status, expiration,
in_progress_expiration) is written directly. Completion is batched (BatchWriteItem, 25 items a
call): the claim is ours, so no condition is needed to complete or release it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(child=True)

IDEMPOTENCY_KEY: Final = "id"
IDEMPOTENCY_TTL_ATTRIBUTE: Final = "expiration"
IN_PROGRESS: Final = "IN_PROGRESS"
COMPLETED: Final = "COMPLETED"
BATCH_WRITE_LIMIT: Final = 25
BATCH_WRITE_ATTEMPTS: Final = 5


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

    def claim(self, file_id: str, holds_until_ms: int) -> Claim:
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
                },
                # Free if absent, expired (TTL deletion lags by up to days), or an IN_PROGRESS
                # whose holder's invocation has ended.
                ConditionExpression=(
                    "attribute_not_exists(#id) OR #exp < :now "
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

    def complete(self, file_ids: Iterable[str]) -> list[str]:
        """Mark claims COMPLETED; returns the ids that could not be marked (logged, not fatal)."""
        expiration = str(int(self._clock()) + self._ttl_seconds)
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        IDEMPOTENCY_KEY: {"S": file_id},
                        "status": {"S": COMPLETED},
                        IDEMPOTENCY_TTL_ATTRIBUTE: {"N": expiration},
                    }
                }
            }
            for file_id in file_ids
        ]
        return self._batch_write(requests)

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
                    logger.warning("idempotency batch write failed", extra={"error": str(err)})
                    unprocessed = {self._table: pending}
                pending = list(unprocessed.get(self._table, []))
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            unwritten.extend(_request_id(request) for request in pending)
        if unwritten:
            logger.warning("idempotency records left as they were", extra={"file_ids": unwritten})
        return unwritten


def _request_id(request: dict[str, Any]) -> str:
    if "PutRequest" in request:
        return str(request["PutRequest"]["Item"][IDEMPOTENCY_KEY]["S"])
    return str(request["DeleteRequest"]["Key"][IDEMPOTENCY_KEY]["S"])
