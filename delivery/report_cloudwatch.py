"""The daily report's figures that only CloudWatch holds, or "unknown" with the reason.

Alarms that fired (DescribeAlarmHistory of the deployment's alarms), SQS redeliveries the
forwarder absorbed (its `DuplicateEvents` and `DuplicatesInBatch`), the DLQs' depth at the day's
end (`ApproximateNumberOfMessagesVisible`) and the headroom under Firehose's Direct PUT quota at
the busiest minute (`IncomingBytes`, `IncomingRecords`, `IncomingPutRequests` against each
stream's `…PerSecondLimit`). The local stack has a CloudWatch API (moto) but no alarms and no
metrics in it: each figure then says it is unknown and why, never a zero it cannot vouch for.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from delivery.reporting import figure, unknown

MINUTE: Final = 60
QUOTAS: Final = (
    ("bytes", "IncomingBytes", "BytesPerSecondLimit"),
    ("records", "IncomingRecords", "RecordsPerSecondLimit"),
    ("requests", "IncomingPutRequests", "PutRequestsPerSecondLimit"),
)
QUERIES_PER_CALL: Final = 500
"""GetMetricData's limit of queries a call."""
FORWARDER_SERVICE: Final = "forwarder"
DUPLICATE_METRICS: Final = ("DuplicateEvents", "DuplicatesInBatch")
NO_METRICS_LOCALLY: Final = "the local stack publishes no CloudWatch metrics"


class CloudWatchOperations(NamedTuple):
    """Reads CloudWatch through `cloudwatch` (a boto3 client): the same calls in AWS and
    against the local stack's moto, which has nothing to say."""

    cloudwatch: Any
    deployment: str
    """The alarms' name prefix without its dash (`<name_prefix>-<environment>`)."""
    namespace: str
    """Sluice's own metrics (tunables `metrics_namespace`), dimension `service`."""
    streams: Sequence[str]
    queues: Mapping[str, str]
    """DLQ name (ingest, delivery, requeue) -> SQS queue name."""

    def alarms_fired(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Each alarm of the deployment that went into ALARM in [start, end), and how often."""
        prefix = f"{self.deployment}-"
        names = {
            alarm["AlarmName"]
            for page in self.cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNamePrefix=prefix
            )
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
        }
        if not names:
            return unknown(
                f"no CloudWatch alarm is named {prefix}* in this account and region "
                "(the local stack creates none)"
            )
        fired: dict[str, int] = defaultdict(int)
        for name in sorted(names):
            fired[name] += sum(1 for item in self._history(name, start, end) if _into_alarm(item))
        rows = [
            {"alarm": name.removeprefix(prefix), "times": count}
            for name, count in sorted(fired.items())
            if count
        ]
        return figure(rows)

    def _history(self, name: str, start: datetime, end: datetime) -> Iterator[Mapping[str, Any]]:
        """One alarm's state changes: asked by name, so that the role may read the history of
        the deployment's alarms only."""
        pages = self.cloudwatch.get_paginator("describe_alarm_history").paginate(
            AlarmName=name, HistoryItemType="StateUpdate", StartDate=start, EndDate=end
        )
        for page in pages:
            yield from page.get("AlarmHistoryItems", [])

    def duplicate_events(self, start: datetime, end: datetime) -> dict[str, Any]:
        """S3 events the forwarder found already sent (SQS redeliveries, S3's duplicates)."""
        dimensions = [{"Name": "service", "Value": FORWARDER_SERVICE}]
        metrics = {
            "received": (self.namespace, "MessagesReceived", dimensions),
            **{name: (self.namespace, name, dimensions) for name in DUPLICATE_METRICS},
        }
        series = self._series(metrics, start, end, period=_whole_period(start, end), stat="Sum")
        if not series["received"]:
            return unknown(
                f"CloudWatch holds no {self.namespace}/MessagesReceived of the forwarder for the "
                f"day ({NO_METRICS_LOCALLY})"
            )
        total = sum(sum(series[name].values()) for name in DUPLICATE_METRICS)
        return figure(int(total))

    def dlq_depths_at(self, moment: datetime) -> dict[str, Any]:
        """Each DLQ's messages in the five minutes before `moment` (the day's end)."""
        metrics = {
            name: ("AWS/SQS", "ApproximateNumberOfMessagesVisible", [_dimension("QueueName", q)])
            for name, q in self.queues.items()
        }
        series = self._series(metrics, moment - timedelta(minutes=5), moment, period=300)
        if not any(series.values()):
            return unknown(
                "SQS keeps no history, and CloudWatch holds no queue metrics for the day's end "
                f"(an idle queue stops reporting after six hours; {NO_METRICS_LOCALLY})"
            )
        return figure(
            {name: int(max(points.values(), default=0)) for name, points in series.items()}
        )

    def firehose_headroom(self, start: datetime, end: datetime) -> dict[str, Any]:
        """The least headroom any stream had under any of its three Direct PUT quotas, in the
        busiest minute of the day, and which quota and minute that was."""
        metrics: dict[str, tuple[str, str, list[dict[str, str]]]] = {}
        for n, stream in enumerate(self.streams):
            dimensions = [_dimension("DeliveryStreamName", stream)]
            for quota, incoming, limit_metric in QUOTAS:
                metrics[f"s{n}_{quota}"] = ("AWS/Firehose", incoming, dimensions)
                metrics[f"s{n}_{quota}_limit"] = ("AWS/Firehose", limit_metric, dimensions)
        sums = self._series(
            {k: v for k, v in metrics.items() if not k.endswith("_limit")}, start, end, MINUTE
        )
        limits = self._series(
            {k: v for k, v in metrics.items() if k.endswith("_limit")},
            start,
            end,
            MINUTE,
            stat="Maximum",
        )
        busiest: tuple[float, str, str, datetime] | None = None
        for n, stream in enumerate(self.streams):
            for quota, _incoming, _limit in QUOTAS:
                limit = max(limits[f"s{n}_{quota}_limit"].values(), default=0.0)
                if limit <= 0:
                    continue
                for moment, total in sums[f"s{n}_{quota}"].items():
                    used = total / MINUTE / limit
                    if busiest is None or used > busiest[0]:
                        busiest = (used, stream, quota, moment)
        if busiest is None:
            return unknown(
                "CloudWatch holds no AWS/Firehose Incoming* and *PerSecondLimit metrics of the "
                f"streams for the day ({NO_METRICS_LOCALLY})"
            )
        used, stream, quota, moment = busiest
        result = figure(round(max(0.0, 1.0 - used), 3))
        result.update(stream=stream, quota=quota, minute=f"{moment:%H:%M}")
        return result

    def _series(
        self,
        metrics: Mapping[str, tuple[str, str, list[dict[str, str]]]],
        start: datetime,
        end: datetime,
        period: int,
        stat: str = "Sum",
    ) -> dict[str, dict[datetime, float]]:
        """id -> {timestamp: value} for each metric, GetMetricData page by page."""
        queries = [
            {
                "Id": query_id,
                "MetricStat": {
                    "Metric": {"Namespace": ns, "MetricName": name, "Dimensions": dimensions},
                    "Period": period,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for query_id, (ns, name, dimensions) in metrics.items()
        ]
        found: dict[str, dict[datetime, float]] = {query_id: {} for query_id in metrics}
        for first in range(0, len(queries), QUERIES_PER_CALL):
            arguments: dict[str, Any] = {
                "MetricDataQueries": queries[first : first + QUERIES_PER_CALL],
                "StartTime": start,
                "EndTime": end,
            }
            while True:
                page = self.cloudwatch.get_metric_data(**arguments)
                for result in page.get("MetricDataResults", []):
                    points = found[result["Id"]]
                    for moment, value in zip(result["Timestamps"], result["Values"], strict=True):
                        points[moment] = points.get(moment, 0.0) + float(value)
                token = page.get("NextToken")
                if not token:
                    break
                arguments["NextToken"] = token
        return found


def _dimension(name: str, value: str) -> dict[str, str]:
    return {"Name": name, "Value": value}


def _whole_period(start: datetime, end: datetime) -> int:
    """One period covering [start, end), a multiple of 60 s as CloudWatch requires."""
    seconds = int((end - start).total_seconds())
    return max(MINUTE, -(-seconds // MINUTE) * MINUTE)


def _into_alarm(item: Mapping[str, Any]) -> bool:
    """Whether a StateUpdate history item is a transition into ALARM."""
    try:
        data = json.loads(item.get("HistoryData") or "{}")
    except ValueError:
        data = {}
    state = data.get("newState", {}).get("stateValue") if isinstance(data, dict) else None
    if state is not None:
        return bool(state == "ALARM")
    return str(item.get("HistorySummary", "")).endswith("to ALARM")
