"""A window's lease: one invocation at a time works on a window (DESIGN §4a rule 3a).

Two invocations of one window can overlap — a duplicate S3 event, the sweep, Lambda's retry of
an attempt that is still running — and on an unversioned MinIO bucket one could delete what the
other verified. So delivery first takes the window's lease, a conditional write in the ledger
(`Ledger.acquire_lease`) that expires `LEASE_SECONDS` after it was last renewed, and renews it
from a heartbeat thread while it works. Before every write to MinIO and before marking the
window delivered it checks that the lease is still its own (`check`): an invocation stalled past
its lease stops rather than write over its successor.

An invocation that finds the lease held waits, touching nothing in MinIO, until the window is
settled by its holder (it then returns what the holder did) or the lease lapses (a holder that
died: it takes over). Still held after `WAIT_SECONDS`, it raises `WindowBusy`, so Lambda
retries it later; redrive does not count that toward PARKED.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Final

from aws_lambda_powertools import Logger

from delivery.ledger import Ledger

logger = Logger(child=True)

LEASE_SECONDS: Final = 60
RENEW_SECONDS: Final = 20
WAIT_SECONDS: Final = LEASE_SECONDS + RENEW_SECONDS
POLL_SECONDS: Final = 2.0


class WindowBusy(RuntimeError):
    """Another invocation held the window's lease for longer than this one could wait."""


class LeaseLost(RuntimeError):
    """The lease lapsed while this invocation worked (it stalled): another may hold it now."""


class WindowLease:
    def __init__(
        self,
        ledger: Ledger,
        window_id: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.window_id = window_id
        self.holder = uuid.uuid4().hex
        self._ledger = ledger
        self._clock = clock
        self._sleep = sleep
        self._lost = threading.Event()
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._renewed_at = 0.0

    def acquire(self, settled: Callable[[], bool]) -> bool:
        """Take the lease, waiting while another holds it; False once `settled()` says the
        holder finished the window. Raises WindowBusy after WAIT_SECONDS."""
        deadline = self._clock() + WAIT_SECONDS
        while not self._take():
            if settled():
                return False
            if self._clock() >= deadline:
                raise WindowBusy(
                    f"window {self.window_id}: another invocation has held its lease for over "
                    f"{WAIT_SECONDS} s; Lambda retries this one later"
                )
            self._sleep(POLL_SECONDS)
        self._heartbeat = threading.Thread(
            target=self._renew, name=f"lease-{self.window_id[:16]}", daemon=True
        )
        self._heartbeat.start()
        return True

    def check(self) -> None:
        """Raise LeaseLost unless the lease is still ours (called before each MinIO write): not
        taken over, and renewed within LEASE_SECONDS (renewals that keep failing lapse it)."""
        if self._lost.is_set() or self._clock() - self._renewed_at >= LEASE_SECONDS:
            raise LeaseLost(
                f"window {self.window_id}: the lease lapsed while this invocation worked"
            )

    def release(self) -> None:
        self._stopping.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._lost.is_set():
            return
        try:
            self._ledger.release_lease(self.window_id, self.holder)
        except Exception:  # it lapses by itself; the caller's own outcome matters more
            logger.warning("could not release the window's lease", exc_info=True)

    def _take(self) -> bool:
        now = self._clock()
        taken = self._ledger.acquire_lease(
            self.window_id, self.holder, int((now + LEASE_SECONDS) * 1000)
        )
        if taken:
            self._renewed_at = now
        return taken

    def _renew(self) -> None:
        while not self._stopping.wait(RENEW_SECONDS):
            try:
                if not self._take():
                    self._lost.set()
                    return
            except Exception:  # a throttled renewal: the next one may still be in time
                logger.warning("could not renew the window's lease", exc_info=True)
