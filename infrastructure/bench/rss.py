"""Resident memory of another process, read from `/proc/<pid>/status` (Linux only).

`VmHWM` is the kernel's own record of the peak resident set, exact however short the peak was;
`reset_peak` sets it back to the current `VmRSS` (writing `5` to `/proc/<pid>/clear_refs`), so
that a peak reached while importing or warming up is not charged to what is measured next.
`RssSampler` polls `VmRSS` from a thread as a cross-check, and as the only measure on a kernel
that refuses `clear_refs`.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB
SAMPLE_INTERVAL_SECONDS: Final = 0.02


@dataclass(frozen=True)
class Memory:
    rss: int
    """`VmRSS` in bytes: resident now."""
    hwm: int
    """`VmHWM` in bytes: the peak resident set since start (or since `reset_peak`)."""


def read_memory(pid: int) -> Memory:
    """The process's `VmRSS` and `VmHWM`; raises ProcessLookupError once it has gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError as err:
        raise ProcessLookupError(pid) from err
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            value, unit = rest.split()
            if unit != "kB":
                raise ValueError(f"/proc/{pid}/status: unexpected unit {unit!r} for {name}")
            fields[name] = int(value) * KiB
    if len(fields) != 2:  # a zombie has no memory lines left
        raise ProcessLookupError(pid)
    return Memory(rss=fields["VmRSS"], hwm=fields["VmHWM"])


def reset_peak(pid: int) -> bool:
    """Set the process's `VmHWM` back to its current `VmRSS`; False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


class RssSampler:
    """Polls a process's `VmRSS` every `interval` seconds in a thread; `peak` is the largest seen.

    A sample can miss a peak shorter than the interval; `VmHWM` cannot, which is why it is the
    figure and this the cross-check.
    """

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL_SECONDS) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = read_memory(self.pid).rss
            except ProcessLookupError:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop polling (after one last sample); the peak seen."""
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(ProcessLookupError):
            self.peak = max(self.peak, read_memory(self.pid).rss)
        return self.peak

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
