"""End-to-end latency as a sparse histogram, kept on each delivered window in the ledger.

Latency is measured from the S3 event's time to the moment delivery marks the window DELIVERED
(DESIGN §5: p95 ≤ 2 min, p99.9 ≤ 3 min). Storing one histogram per window, instead of a figure
per file, keeps the ledger item small and lets anyone with read access to the ledger compute
percentiles over any set of windows — `sluice up`'s status line locally, `sluice status` in AWS —
with no metrics backend.

Buckets are whole seconds up to 10 minutes, then 10 seconds up to an hour, then whole minutes.
A window's files arrive within its buffer interval, so a window fills a few dozen buckets at
most. A percentile is reported as its bucket's upper bound: never lower than the true figure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

SECOND_MS: Final = 1_000
FINE_LIMIT_MS: Final = 600 * SECOND_MS
MEDIUM_LIMIT_MS: Final = 3_600 * SECOND_MS


def bucket_of(latency_ms: int) -> int:
    """The upper bound, in ms, of the bucket holding `latency_ms` (negative clock skew: 0)."""
    if latency_ms <= 0:
        return 0
    for limit, width in ((FINE_LIMIT_MS, SECOND_MS), (MEDIUM_LIMIT_MS, 10 * SECOND_MS)):
        if latency_ms <= limit:
            return math.ceil(latency_ms / width) * width
    return math.ceil(latency_ms / (60 * SECOND_MS)) * 60 * SECOND_MS


@dataclass
class LatencyHistogram:
    """File counts per latency bucket (upper bound in ms -> files)."""

    counts: Counter[int] = field(default_factory=Counter)

    @classmethod
    def of(cls, latencies_ms: Iterable[int]) -> LatencyHistogram:
        return cls(Counter(bucket_of(latency) for latency in latencies_ms))

    @classmethod
    def from_item(cls, item: Mapping[str, int]) -> LatencyHistogram:
        """From the ledger's map (DynamoDB map keys are strings)."""
        return cls(Counter({int(bucket): int(count) for bucket, count in item.items()}))

    def to_item(self) -> dict[str, int]:
        return {str(bucket): count for bucket, count in sorted(self.counts.items()) if count}

    def add(self, other: LatencyHistogram) -> None:
        self.counts.update(other.counts)

    @property
    def files(self) -> int:
        return sum(self.counts.values())

    def percentile(self, fraction: float) -> int | None:
        """The bucket bound (ms) at or below which `fraction` (0 < f ≤ 1) of the files were
        delivered; None when there is no file."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be within (0, 1], not {fraction!r}")
        total = self.files
        if total == 0:
            return None
        rank = math.ceil(fraction * total)
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return bucket
        return max(self.counts)  # not reached: the counts add up to `total`
