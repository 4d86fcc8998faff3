"""A local stack killed outright (SIGKILL: no handler runs) leaves no process behind: its servers
and Lambda workers are tied to it (infrastructure/local/lifeline.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from infrastructure.local.stack.stack_file import read_stack, stack_path
from tests.integration.runtime_support import wait_until
from tests.slow.test_local_stack import (
    TIME_SCALE,
    alive,
    delivered_files,
    descendants,
    endpoints,
    listening,
    sluice,
)

pytestmark = pytest.mark.slow


def test_a_stack_killed_with_sigkill_leaves_no_process(tmp_path: Path) -> None:
    # GIVEN a stack in the foreground that has delivered a file (so every worker has started)
    process = subprocess.Popen(  # noqa: S603  # our own command
        [str(Path(sys.executable).with_name("sluice")), "up", "--time-scale", str(TIME_SCALE)],
        env={**os.environ, "SLUICE_ROOT": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: stack_path(tmp_path).exists(), what="the stack file", timeout=240)
        file = read_stack(tmp_path)
        upload = tmp_path / "lifeline.json"
        upload.write_bytes(b'{"tied": true}')
        assert sluice(tmp_path, "put", str(upload), "--prefix", "acme/").returncode == 0
        wait_until(
            lambda: [k for k, _, _ in delivered_files(file) if k == "acme/lifeline.json"],
            what="the file in MinIO",
            timeout=240,
        )
        processes = descendants(process.pid) | set(file.pids.values()) - {process.pid}
        assert len(processes) >= 5, processes  # moto, SeaweedFS and at least three workers
        # WHEN it is killed with SIGKILL
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        # THEN every process it had started goes, and no port stays open
        wait_until(
            lambda: not [pid for pid in processes if alive(pid)],
            what=f"no process left of {sorted(processes)}",
            timeout=30,
        )
        assert [e for e in endpoints(file) if listening(e)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        sluice(tmp_path, "down", "--timeout", "30")  # the stale stack file, and any straggler
    assert not stack_path(tmp_path).exists()
