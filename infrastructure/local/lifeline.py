"""Processes the local stack starts die with it, however it dies (SIGKILL included).

`watch_parent()` for our own Python processes, `tied_argv()` for a binary; `alive()` and
`stop_process_group()` for whoever stops them. Spec: docs/local-stack.md, `lifeline.py`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Final

PR_SET_PDEATHSIG: Final = 1
"""From <sys/prctl.h>."""
PARENT_POLL_SECONDS: Final = 0.5
STOP_GROUP_SECONDS: Final = 10.0


def watch_parent(poll_seconds: float = PARENT_POLL_SECONDS) -> None:
    """Exit this process (status 0, at once) when the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(poll_seconds)
        os._exit(0)  # no cleanup to run: the parent that wanted this process is gone

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def tied_argv(argv: list[str]) -> list[str]:
    """`argv` run so that it is killed when the calling process dies (docs/local-stack.md)."""
    return [sys.executable, "-m", __name__, str(os.getpid()), "--", *argv]


def _tie_and_exec(parent: int, argv: list[str]) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent:  # the parent died before the tie was made
        raise SystemExit(0)
    os.execvp(argv[0], argv)  # noqa: S606  # the argv our own caller built, no shell


def alive(pid: int) -> bool:
    """Whether process `pid` runs: a zombie (exited, not yet reaped by its parent) is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def stop_process_group(pid: int) -> None:
    """SIGTERM the group `pid` leads, then SIGKILL it if it has not gone within 10 s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GROUP_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap it if it is our child; a zombie would still count as alive
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


if __name__ == "__main__":
    parent_pid, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(f"usage: python -m {__name__} PARENT_PID -- COMMAND [ARG...]")
    _tie_and_exec(int(parent_pid), command)
