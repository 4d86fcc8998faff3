"""The pure helpers of `make bench-e2e` (infrastructure/bench/e2e.py); the run itself is not a
test."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from infrastructure.bench import e2e
from infrastructure.bench.e2e import Sample
from infrastructure.cli.files import LoadReport


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert e2e.percentile(values, 0.5) == 500
    assert e2e.percentile(values, 0.95) == 950
    assert e2e.percentile(values, 0.999) == 999
    assert e2e.percentile(values, 1.0) == 1000
    assert e2e.percentile([7.0], 0.999) == 7
    assert e2e.percentile([], 0.5) is None
    with pytest.raises(ValueError, match="fraction"):
        e2e.percentile(values, 0)


def test_latency_runs_from_the_event_time_to_the_window_delivered() -> None:
    a, b, c = ("k/a", "1"), ("k/b", "2"), ("k/c", "3")
    events = {a: 1_000, b: 2_500, c: 3_000}
    owner = {a: "w1", b: "w1", c: "w2"}
    assert e2e.latencies_s(events, owner, {"w1": 71_000}) == {a: 70.0, b: 68.5}


def test_the_oldest_waiting_message_is_the_first_not_forwarded_in_landing_order() -> None:
    landed = [100.0, 101.0, 102.0, 103.0]
    assert e2e.oldest_waiting_age(landed, forwarded=0, now=110) == 10
    assert e2e.oldest_waiting_age(landed, forwarded=2, now=110) == 8
    assert e2e.oldest_waiting_age(landed, forwarded=4, now=110) == 0
    assert e2e.oldest_waiting_age([], forwarded=0, now=110) == 0


def test_cpu_share_is_cores_over_the_interval() -> None:
    ticks = e2e.CLOCK_TICKS
    assert e2e.cpu_share(0, ticks * 3, 3.0) == pytest.approx(1.0)
    assert e2e.cpu_share(0, ticks, 2.0) == pytest.approx(0.5)
    assert e2e.cpu_share(500, 100, 1.0) == 0  # a worker replaced: never negative
    assert e2e.cpu_share(0, 100, 0) == 0


def sample(t: float, depth: int, moto: float = 0.1, rps: float = 10) -> Sample:
    return Sample(
        t=t,
        landed=0,
        forwarded=0,
        delivered=0,
        ingest_depth=depth,
        oldest_s=depth / 10,
        firehose_buffered=0,
        firehose_throttled=0,
        cpu={"moto": moto, "forwarder": 0.2},
        moto_s3_rps=rps,
        moto_other_rps=1,
    )


def test_saturation_finds_the_peak_and_when_the_queue_drained() -> None:
    samples = [
        sample(0, 0),
        sample(3, 40, moto=0.95, rps=200),
        sample(6, 120, moto=0.99),
        sample(9, 120),
        sample(12, 30),
        sample(15, 0),
        sample(18, 5),
    ]
    found = e2e.saturation(samples)
    assert (found.max_depth, found.max_depth_at, found.drained_at) == (120, 6, 15)
    assert found.max_oldest_s == 12
    assert found.saturated == ["moto"]
    assert found.peak_cpu == {"moto": 0.99, "forwarder": 0.2}
    assert found.max_moto_rps == 201


def test_saturation_says_when_the_queue_never_drained() -> None:
    found = e2e.saturation([sample(0, 0), sample(3, 50), sample(6, 60)])
    assert (found.max_depth, found.drained_at) == (60, None)
    assert e2e.saturation([]).max_depth == 0


def test_moto_requests_are_split_into_s3_and_the_json_apis() -> None:
    lines = [
        '127.0.0.1 - - [25/Nov/2026 17:57:02] "POST / HTTP/1.1" 200 -',
        '127.0.0.1 - - [25/Nov/2026 17:57:02] "PUT /landing/a%20b.json HTTP/1.1" 200 -',
        '127.0.0.1 - - [25/Nov/2026 17:57:02] "GET /landing/a?versionId=1 HTTP/1.1" 200 -',
        "some other log line",
    ]
    assert e2e.count_requests(lines) == (2, 1)


def test_figures_are_named_per_phase_with_the_slo_as_goals() -> None:
    report = LoadReport(sent={("k", str(n)): "json" for n in range(100)}, sending_seconds=10.0)
    result = e2e.PhaseResult(
        e2e.Phase("10fps", 10, 10),
        report,
        latencies=[float(v) for v in range(30, 130)],
        delivered=100,
    )
    found = {f.name: f for f in e2e.figures([result], e2e.saturation([]), e2e.FULL)}
    assert {
        "e2e_10fps_rate",
        "e2e_10fps_p50_s",
        "e2e_10fps_p95_s",
        "e2e_10fps_p999_s",
        "e2e_10fps_lost",
        "e2e_10fps_duplicates",
        "e2e_ingest_max_depth",
    } <= set(found)
    assert found["e2e_10fps_rate"].value == 10
    assert found["e2e_10fps_p95_s"].value == 124
    assert found["e2e_10fps_p95_s"].met is False
    assert found["e2e_10fps_p999_s"].met is True
    assert found["e2e_10fps_lost"].met is True
    quick = e2e.figures([result], e2e.saturation([]), e2e.QUICK)
    assert all(f.note == "quick run" for f in quick)


def test_the_machine_is_saturated_only_when_every_core_is_busy() -> None:
    busy = Sample(0, 0, 0, 0, 0, 0, 0, 0, cpu={"machine": 0.95, "moto": 0.5})
    assert e2e.saturation([busy]).saturated == ([] if e2e.CORES > 1 else ["machine"])
    full = Sample(0, 0, 0, 0, 0, 0, 0, 0, cpu={"machine": 0.95 * e2e.CORES})
    assert e2e.saturation([full]).saturated == ["machine"]


def test_sigterm_ends_the_run_through_its_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a run under way (the stack's start and stop stood in for by a try/finally)
    cleaned: list[bool] = []

    def run(*_: Any) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # WHEN it is sent SIGTERM
            time.sleep(5)
        finally:
            cleaned.append(True)

    monkeypatch.setattr(e2e, "run", run)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            e2e.main(["--quick", "--root", str(tmp_path)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    # THEN it exits as a terminated process does, after its cleanup ran (the stack stopped)
    assert exited.value.code == 143
    assert cleaned == [True]
