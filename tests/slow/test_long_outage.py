"""Gameday (issue 13): a long MinIO outage at a high time scale, a backlog of at least 500 staged
windows, then MinIO back and the stack's own scheduled redrive draining it while files keep
landing — ending with `sluice reconcile` finding nothing missing or doubled.

The outage runs at time scale 60, so that 500 windows (about 4 scaled hours) stage in minutes.
The drain runs at time scale 5: at 60, draining 10x faster than windows arrive would take 20
deliveries every real second, which measures this machine's two cores, not redrive. At 5,
windows arrive every 12 s per stream and redrive runs every real minute, so the ratio measured
is redrive's, with every delivery real. The figures are counts, not seconds: backlog windows
delivered ÷ new windows staged while they drained (the same period, so the ratio of the two
rates), written to `build/gameday/long-outage.json`.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from delivery.layout import window_name
from delivery.ledger import Ledger, WindowRecord, WindowState
from infrastructure.local.stack.local_stack import LocalStack, StackOptions
from tests.integration.runtime_support import wait_until
from tests.slow.test_gamedays import Gameday, gameday_on, parked_windows

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # its stack keeps both cores busy

OUTAGE_TIME_SCALE = 60.0
"""One scaled minute, a window, a second of wall time: a 4-hour outage in about 4 minutes."""
DRAIN_TIME_SCALE = 5.0
"""Redrive every real minute, at most `limit_per_run` (200) windows a run; a window per stream
every 12 real seconds."""
BACKLOG_WINDOWS = 500
MIN_DRAIN_RATIO = 10
LANDING_EVERY_SECONDS = 0.5
"""Files keep landing through the outage and the drain, enough for both streams' windows."""
WORKERS_PER_FUNCTION = 4
"""Workers per function (the local stack's default is 2): a drain's deliveries wait on moto and
SeaweedFS, and Lambda would run many more. Measured here, idle: drain ratio 5.2 with 2 workers,
7.5 with 4, 7.0 with 6 (the two cores are then the limit)."""
POLL_EVERY_SECONDS = 10
OUTAGE_LIMIT_SECONDS = 1200
DRAIN_LIMIT_SECONDS = 900
FIGURES = Path(__file__).resolve().parents[2] / "build" / "gameday" / "long-outage.json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("long-outage")
    tunables = json.loads(
        (Path(__file__).resolve().parents[2] / "infrastructure" / "tunables.json").read_text()
    )
    # Redrive's waits are its own tunables, not the runtime's: scaled here by hand for the
    # outage's scale, as the runtime scales its schedule (every 5 min → every 5 s); the drain's
    # lower scale only makes them shorter than it needs. A window left CLAIMED (its
    # invocation's on-failure record lost, as when a loaded moto times out the send) is
    # re-invoked after 3 min — past the local stack's 120 s delivery timeout — not 30.
    tunables["redrive"].update(
        min_age_seconds=2, jitter_seconds=1, unrecorded_grace_seconds=10, claimed_stale_seconds=180
    )
    tunables_file = root / "tunables.json"
    tunables_file.write_text(json.dumps(tunables))
    options = StackOptions(
        root=root,
        time_scale=OUTAGE_TIME_SCALE,
        tunables_file=tunables_file,
        workers_per_function=WORKERS_PER_FUNCTION,
    )
    started = LocalStack(options).start()
    try:
        yield started
    finally:
        started.stop(flush=False)


@pytest.fixture
def gameday(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Gameday]:
    yield from gameday_on(stack, monkeypatch, capsys)


class Landing:
    """Lands a file every LANDING_EVERY_SECONDS on a thread, as producers would, until stopped."""

    def __init__(self, gameday: Gameday) -> None:
        self._gameday = gameday
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Landing:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._gameday.land(1)
                self._stop.wait(LANDING_EVERY_SECONDS)
        except BaseException as err:  # noqa: BLE001 - re-raised on the test's thread at exit
            self.error = err


def staged_windows(gameday: Gameday) -> dict[str, datetime]:
    """Every staged window's id → when it was staged (the local staging bucket is small)."""
    target = gameday.target
    extension = gameday.stack.tunables.firehose.file_extension
    pages = target.client("s3").get_paginator("list_objects_v2")
    windows = {}
    for page in pages.paginate(Bucket=target.staging_bucket, Prefix="buffers/"):
        for item in page.get("Contents", []):
            windows[window_name(item["Key"], extension).window_id] = item["LastModified"]
    return windows


def states_of(ledger: Ledger, windows: set[str]) -> str:
    """How many of `windows` are in each ledger state ("unrecorded" for no item): what a
    timed-out wait reports."""
    records = ledger.get_windows(sorted(windows), summary=True)
    counts = Counter(r.state.value for r in records.values())
    counts["unrecorded"] = len(windows) - len(records)
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items()) if n)


def all_delivered(ledger: Ledger, windows: set[str]) -> dict[str, WindowRecord] | None:
    """Their summaries once all are final: the test's polls read little of the moto the stack
    shares, whose CPU is the drain's limit."""
    records = ledger.get_windows(sorted(windows), summary=True)
    final = (WindowState.DELIVERED, WindowState.EMPTY)
    if len(records) == len(windows) and all(r.state in final for r in records.values()):
        return records
    return None


def test_long_outage_backlog_drained_by_the_schedule(gameday: Gameday) -> None:
    target = gameday.target
    ledger = Ledger(target.client("dynamodb"), target.ledger_table, 3600)
    before = set(staged_windows(gameday))
    with Landing(gameday):
        # GIVEN MinIO away while files keep landing, until at least 500 windows are staged
        gameday.sluice("chaos", "minio-down", "--seconds", str(OUTAGE_LIMIT_SECONDS))
        backlog = wait_until(
            lambda: (
                found
                if len(found := set(staged_windows(gameday)) - before) >= BACKLOG_WINDOWS
                else None
            ),
            what=f"{BACKLOG_WINDOWS} windows staged during the outage",
            timeout=OUTAGE_LIMIT_SECONDS,
            every=POLL_EVERY_SECONDS,
        )
        # ... none of which could be delivered
        records = ledger.get_windows(sorted(backlog), summary=True)
        assert not [w for w, r in records.items() if r.state is WindowState.DELIVERED]
        # WHEN MinIO comes back, and nobody runs anything by hand (time now runs at the drain's
        # scale); the backlog is every window staged by then
        gameday.sluice("chaos", "clear")
        gameday.stack.set_time_scale(DRAIN_TIME_SCALE)
        backlog = set(staged_windows(gameday)) - before
        # THEN the scheduled redrive drains the whole backlog while new windows keep arriving
        drained = wait_until(
            lambda: all_delivered(ledger, backlog),
            what=f"the {len(backlog)} backlog windows delivered",
            timeout=DRAIN_LIMIT_SECONDS,
            every=POLL_EVERY_SECONDS,
            progress=lambda: states_of(ledger, backlog),
        )
        staged = staged_windows(gameday)
    # ... and once the last files are in, every window is settled, none parked ...
    wait_until(
        lambda: all_delivered(ledger, set(staged_windows(gameday)) - before),
        what="every window staged since the outage delivered",
        timeout=DRAIN_LIMIT_SECONDS,
        every=POLL_EVERY_SECONDS,
        progress=lambda: states_of(ledger, set(staged_windows(gameday)) - before),
    )
    assert parked_windows(target) == []
    # ... and reconcile finds every file landed delivered once, the last ones landed too (they
    # may not have been staged yet when the windows above were listed): nothing missing or
    # doubled
    gameday.assert_exactly_once(gameday.all_delivered())
    drain_end = max(r.delivered_at_ms or 0 for r in drained.values()) / 1000
    arrived = [
        w for w, at in staged.items() if w not in before | backlog and at.timestamp() <= drain_end
    ]
    ratio = write_figures(len(backlog), len(arrived))
    # ... at least ten times faster than windows arrive, as production needs after an outage
    assert ratio >= MIN_DRAIN_RATIO


def write_figures(backlog: int, arrived: int) -> float:
    """Backlog windows drained ÷ windows staged while they drained: the ratio of the rates."""
    figures = {
        "outage_time_scale": OUTAGE_TIME_SCALE,
        "drain_time_scale": DRAIN_TIME_SCALE,
        "backlog_windows": backlog,
        "windows_arriving_during_drain": arrived,
        "drain_to_arrival_ratio": round(backlog / max(1, arrived), 1),
    }
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"long outage: {figures}")
    return figures["drain_to_arrival_ratio"]
