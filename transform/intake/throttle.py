"""Each producer's requests a second, per route, counted in the idempotency table (one write a
request).

API Gateway's HTTP APIs throttle per route and stage, not per client; this counter gives each
producer its own limit, so one producer's burst cannot starve another's. A fixed one-second
window keyed `rate#<producer>#<route>#<epoch second>`, expiring a minute later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple

from transform.intake.problems import throttled

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

EXPIRE_AFTER_SECONDS: Final = 60


class Throttle(NamedTuple):
    dynamodb: DynamoDBClient
    table: str
    clock: Callable[[], float] = lambda: time.time()  # noqa: PLW0108  # looked up at each call, so a test can fix the clock

    def admit(self, producer: str, route: str, limit: int) -> None:
        """Count one request; 429 with Retry-After when `producer` is over `limit` this second."""
        second = int(self.clock())
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": f"rate#{producer}#{route}#{second}"}},
                UpdateExpression="ADD #n :one SET #expiration = :expires",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "requests", "#expiration": "expiration"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": str(second + EXPIRE_AFTER_SECONDS)},
                },
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            raise throttled(producer, route, limit, retry_after=1) from None
