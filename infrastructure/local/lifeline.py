"""Processes the local stack starts die with it, however it dies (SIGKILL included).

The servers run in sessions of their own (so a Ctrl-C reaches the stack, which stops them in
order), which also means nothing ends them when the stack is killed outright. Two ties:
- `watch_parent()`, for our own Python processes (moto server, Lambda workers): a daemon thread
  that exits the process once its parent is gone (it is re-parented, so `getppid` changes).
- `tied_argv(argv)`, for a binary (SeaweedFS): runs it through this module, which asks Linux to
  SIGKILL it when its parent dies (`PR_SET_PDEATHSIG`) and then becomes it (`exec`). Linux sends
  that signal when the *thread* that started the child ends, so call it from a thread that lives
  as long as the child (the stack starts its servers from its main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from typing import Final

PR_SET_PDEATHSIG: Final = 1
"""From <sys/prctl.h>."""
PARENT_POLL_SECONDS: Final = 0.5


def watch_parent(poll_seconds: float = PARENT_POLL_SECONDS) -> None:
    """Exit this process (status 0, at once) when the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(poll_seconds)
        os._exit(0)  # no cleanup to run: the parent that wanted this process is gone

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def tied_argv(argv: list[str]) -> list[str]:
    """`argv` run so that it is killed when the calling process dies (see the module doc)."""
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


if __name__ == "__main__":
    parent_pid, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(f"usage: python -m {__name__} PARENT_PID -- COMMAND [ARG...]")
    _tie_and_exec(int(parent_pid), command)
