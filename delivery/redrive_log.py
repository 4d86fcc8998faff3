"""Redrive's runs, logged by day in the ledger: MinIO's availability and the windows redriven.

Redrive probes MinIO at the start of every run (a write, read back and deleted: DESIGN §4b) and
publishes `MinioHealthy` and `WindowsRedriven`, which CloudWatch keeps and the local stack does
not. So that the daily report can say how long MinIO was unavailable and how much was redriven
from what Sluice itself keeps, redrive also adds to one ledger item per UTC day,
`REDRIVE#YYYY-MM-DD`:
- each scheduled run's probe: probes, failed probes, and, when a probe fails, the time since the
  previous probe (of any day: the item `REDRIVE#last-probe` keeps its time) counted as
  unavailable, capped so that hours without a run are not counted; the first probe ever counts
  nothing. A figure as fine as the schedule: one redrive period (5 minutes) either way;
- each run's redrives, the scheduled ones and `sluice redrive`'s alike: DLQ records redriven (and
  of those, failed for the environment), unrecorded and stale windows re-invoked, windows parked.
The item expires with the ledger's TTL, like the windows the report reads beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from delivery.ledger import LEDGER_KEY, LEDGER_TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LOG_PREFIX: Final = "REDRIVE#"
LAST_PROBE_KEY: Final = "REDRIVE#last-probe"
RUN_COUNTS: Final = ("dlq_redriven", "environment_redriven", "reinvoked", "parked")


class RedriveDay(NamedTuple):
    """A day of redrive's runs."""

    day: date
    probes: int
    failed: int
    unavailable_ms: int
    first_probe_ms: int
    last_probe_ms: int
    dlq_redriven: int = 0
    environment_redriven: int = 0
    reinvoked: int = 0
    parked: int = 0


def log_key(day: date) -> dict[str, Any]:
    return {LEDGER_KEY: {"S": f"{LOG_PREFIX}{day.isoformat()}"}}


class RedriveLog:
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

    def _today(self) -> tuple[float, date]:
        now = self._clock()
        return now, datetime.fromtimestamp(now, UTC).date()

    def record_probe(self, healthy: bool, *, max_interval_ms: int) -> int:
        """Add one probe to today's item; returns the milliseconds counted unavailable.

        A failed probe counts the time since the previous probe, whatever its day, at most
        `max_interval_ms`; with no previous probe, nothing. Redrive runs one at a time, so the
        read of the previous probe's time (UPDATED_OLD) and the writes after it cannot
        interleave with another run's.
        """
        now, day = self._today()
        now_ms = int(now * 1000)
        expires = {"N": str(int(now) + self._ttl_seconds)}
        self._dynamodb.update_item(
            TableName=self._table,
            Key=log_key(day),
            UpdateExpression=(
                "SET last_probe_ms = :now, first_probe_ms = if_not_exists(first_probe_ms, :now), "
                "#exp = :exp ADD probes :one, failed_probes :failed"
            ),
            ExpressionAttributeNames={"#exp": LEDGER_TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":now": {"N": str(now_ms)},
                ":exp": expires,
                ":one": {"N": "1"},
                ":failed": {"N": "0" if healthy else "1"},
            },
        )
        response = self._dynamodb.update_item(
            TableName=self._table,
            Key={LEDGER_KEY: {"S": LAST_PROBE_KEY}},
            UpdateExpression="SET last_probe_ms = :now, #exp = :exp",
            ExpressionAttributeNames={"#exp": LEDGER_TTL_ATTRIBUTE},
            ExpressionAttributeValues={":now": {"N": str(now_ms)}, ":exp": expires},
            ReturnValues="UPDATED_OLD",
        )
        previous = response.get("Attributes", {}).get("last_probe_ms", {}).get("N")
        if healthy or previous is None:
            return 0
        unavailable = max(0, min(now_ms - int(previous), max_interval_ms))
        if unavailable:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=log_key(day),
                UpdateExpression="ADD unavailable_ms :ms",
                ExpressionAttributeValues={":ms": {"N": str(unavailable)}},
            )
        return unavailable

    def record_run(self, counts: dict[str, int]) -> None:
        """Add a run's redrives (RUN_COUNTS) to today's item; nothing when there were none."""
        added = {name: counts.get(name, 0) for name in RUN_COUNTS}
        if not any(added.values()):
            return
        now, day = self._today()
        names = {f"#{name}": name for name in added}
        values: dict[str, Any] = {f":{name}": {"N": str(n)} for name, n in added.items()}
        values[":exp"] = {"N": str(int(now) + self._ttl_seconds)}
        self._dynamodb.update_item(
            TableName=self._table,
            Key=log_key(day),
            UpdateExpression="SET #exp = :exp ADD "
            + ", ".join(f"#{name} :{name}" for name in added),
            ExpressionAttributeNames={**names, "#exp": LEDGER_TTL_ATTRIBUTE},
            ExpressionAttributeValues=values,
        )

    def day(self, day: date) -> RedriveDay | None:
        """The day's log; None when redrive logged nothing that day."""
        item = self._dynamodb.get_item(
            TableName=self._table, Key=log_key(day), ConsistentRead=True
        ).get("Item")
        if item is None:
            return None

        def number(name: str) -> int:
            return int(item.get(name, {}).get("N", "0"))

        return RedriveDay(
            day=day,
            probes=number("probes"),
            failed=number("failed_probes"),
            unavailable_ms=number("unavailable_ms"),
            first_probe_ms=number("first_probe_ms"),
            last_probe_ms=number("last_probe_ms"),
            **{name: number(name) for name in RUN_COUNTS},
        )
