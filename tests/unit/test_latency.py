"""The latency histogram kept on delivered windows (delivery.latency)."""

from __future__ import annotations

import math
import random

import pytest

from delivery.latency import LatencyHistogram, bucket_of


@pytest.mark.parametrize(
    ("latency_ms", "bucket"),
    [
        (-5, 0),
        (0, 0),
        (1, 1_000),
        (1_000, 1_000),
        (1_001, 2_000),
        (600_000, 600_000),
        (600_001, 610_000),
        (3_600_000, 3_600_000),
        (3_600_001, 3_660_000),
    ],
)
def test_buckets_are_seconds_then_ten_seconds_then_minutes(latency_ms: int, bucket: int) -> None:
    assert bucket_of(latency_ms) == bucket


def test_percentiles_are_bucket_upper_bounds_never_below_the_true_figure() -> None:
    # GIVEN 10,000 latencies between 55 s and 4 min
    rng = random.Random(7)
    latencies = sorted(rng.randint(55_000, 240_000) for _ in range(10_000))
    histogram = LatencyHistogram.of(latencies)
    for fraction in (0.5, 0.95, 0.99, 0.999, 1.0):
        # WHEN a percentile is read
        bound = histogram.percentile(fraction)
        # THEN it is the true percentile rounded up to its one-second bucket
        true = latencies[math.ceil(fraction * len(latencies)) - 1]
        assert bound == bucket_of(true)
        assert true <= bound < true + 1_000


def test_histograms_of_windows_add_up_and_survive_the_ledger_map() -> None:
    # GIVEN two windows' histograms
    first = LatencyHistogram.of([60_000, 61_000])
    second = LatencyHistogram.from_item(LatencyHistogram.of([120_500]).to_item())
    # WHEN they are added
    total = LatencyHistogram()
    total.add(first)
    total.add(second)
    # THEN counts and percentiles cover both
    assert total.files == 3
    assert total.to_item() == {"60000": 1, "61000": 1, "121000": 1}
    assert total.percentile(0.5) == 61_000
    assert total.percentile(1.0) == 121_000


def test_an_empty_histogram_has_no_percentile_and_a_bad_fraction_is_refused() -> None:
    assert LatencyHistogram().percentile(0.5) is None
    with pytest.raises(ValueError, match="fraction"):
        LatencyHistogram.of([1]).percentile(0)
