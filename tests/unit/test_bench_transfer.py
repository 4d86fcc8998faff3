"""The transfer benchmark's instruments (infrastructure.bench: rss, staged, transfer)
measure what they claim. No timing is asserted."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery.window import InlineBodies, parse_window
from infrastructure.bench.rss import MiB, RssSampler, read_memory, reset_peak
from infrastructure.bench.staged import BodyPool, PatternStream, write_inline_window
from infrastructure.bench.transfer import _rclone_stats

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc")

ALLOCATE = 48
CHILD = f"""
import sys
print("ready", flush=True)
sys.stdin.readline()
held = b"x" * ({ALLOCATE} * 1024 * 1024)  # written, so every page is resident
print("holding", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def allocating_child() -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(  # noqa: S603  # this interpreter, a fixed script
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def _tell(child: subprocess.Popen[str], expect: str | None) -> None:
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write("\n")
    child.stdin.flush()
    if expect is not None:
        assert child.stdout.readline().strip() == expect


def test_peak_and_samples_see_a_child_allocate(allocating_child: subprocess.Popen[str]) -> None:
    # GIVEN a child that has started, its peak reset to what it holds now
    assert allocating_child.stdout is not None
    assert allocating_child.stdout.readline().strip() == "ready"
    pid = allocating_child.pid
    reset_peak(pid)
    before = read_memory(pid)
    # WHEN it allocates N MiB while sampled
    with RssSampler(pid, interval=0.005) as sampler:
        _tell(allocating_child, "holding")
    after = read_memory(pid)
    # THEN both the kernel's peak and the samples grew by at least N MiB
    assert after.hwm - before.rss >= ALLOCATE * MiB
    assert sampler.peak - before.rss >= ALLOCATE * MiB
    assert sampler.samples >= 1


def test_reset_peak_forgets_an_earlier_peak(allocating_child: subprocess.Popen[str]) -> None:
    # GIVEN a child whose peak includes N MiB it then still holds
    assert allocating_child.stdout is not None
    assert allocating_child.stdout.readline().strip() == "ready"
    pid = allocating_child.pid
    _tell(allocating_child, "holding")
    # WHEN the peak is reset THEN it is the current RSS again
    if not reset_peak(pid):
        pytest.skip("this kernel refuses clear_refs")
    memory = read_memory(pid)
    assert abs(memory.hwm - memory.rss) < 4 * MiB


def test_read_memory_of_a_process_that_has_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        read_memory(child.pid)


def test_inline_window_is_what_delivery_parses(tmp_path: Path) -> None:
    # GIVEN a generated window of about 2 MiB of envelopes
    import random  # noqa: PLC0415  # data only

    rng = random.Random(5)
    window = write_inline_window(
        tmp_path / "w.json.gz",
        target_bytes=2 * MiB,
        pool=BodyPool(rng, size=32),
        rng=rng,
        landing_bucket="landing",
    )
    # WHEN delivery's own reader parses it
    parsed = parse_window(window.path)
    # THEN every line is a distinct, valid envelope whose body matches its sha256, the sizes
    # reported are the file's
    assert parsed.bad_lines == []
    assert parsed.repeated == 0
    assert len(parsed.entries) == window.files
    assert window.envelope_bytes >= 2 * MiB
    assert window.envelope_bytes == len(gzip.decompress(window.path.read_bytes()))
    assert window.staged_bytes == window.path.stat().st_size
    assert {entry.encoding for entry in parsed.entries} <= {"utf8", "base64"}
    bodies = InlineBodies(parsed)
    try:
        first = parsed.entries[0]
        assert len(bodies.body(first)) == first.size
    finally:
        bodies.close()


def test_pattern_stream_is_exact_and_incompressible() -> None:
    data = io.BufferedReader(PatternStream(3 * MiB + 17, seed=4), buffer_size=MiB).read()
    assert len(data) == 3 * MiB + 17
    assert len(gzip.compress(data, compresslevel=6)) > 0.99 * len(data)
    assert data == io.BufferedReader(PatternStream(3 * MiB + 17, seed=4)).read()


def test_rclone_stats_are_the_last_json_stats_line() -> None:
    log = "\n".join(
        (
            '{"level":"info","msg":"Copied (new)","size":5}',
            "not json",
            '{"level":"info","msg":"x","stats":{"bytes":1,"serverSideCopies":0}}',
            '{"level":"info","msg":"y","stats":{"bytes":5,"serverSideCopies":0}}',
        )
    )
    assert _rclone_stats(log) == {"bytes": 5, "serverSideCopies": 0}
    assert _rclone_stats("") == {}
