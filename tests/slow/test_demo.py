"""`make demo` runs: sample files through every function into SeaweedFS, in one process."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_delivers_every_sample_file_verified() -> None:
    # WHEN the demo runs, as `make demo` runs it
    done = subprocess.run(
        [sys.executable, "-m", "infrastructure.local.stack.demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # THEN it succeeds with every archive's sha256 checked and every file verified
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "archive sha256 ok" in done.stdout
    assert "  ok  " in done.stdout
    assert "BAD" not in done.stdout
