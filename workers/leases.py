"""Lease renewal: a running step keeps its lease fresh, so the lease can be short and a dead worker's step is
taken over soon (by the sweeper) instead of after the longest a step could ever take.

One daemon thread per worker process looks every second and renews the lease of each step running in it once a
third of that lease has passed. When the step has moved on (it ended, or was taken over), a renewal changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shared import lifecycle
from shared.models import utcnow
from workers import context

log = logging.getLogger("genqueue.workers")
TICK_SECONDS = 1.0


@dataclass
class _Held:
    job_id: str
    task_id: str
    lease_seconds: float
    #: time.monotonic() of the next renewal
    due: float


class LeaseKeeper:
    """Renews the leases of the steps running in this process."""

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._next = 0

    @contextmanager
    def keep(self, job_id: str, task_id: str, lease_seconds: float) -> Iterator[None]:
        """Renew the lease of job `job_id`'s step owned by `task_id` while the block runs."""
        with self._lock:
            self._start_once()
            key = self._next
            self._next += 1
            self._held[key] = _Held(job_id, task_id, lease_seconds, time.monotonic() + lease_seconds / 3)
        try:
            yield
        finally:
            with self._lock:
                del self._held[key]

    def _start_once(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()  # a forked child starts its own thread
        threading.Thread(target=self._run, name="genqueue-lease-keeper", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                due = [item for item in self._held.values() if item.due <= now]
                for item in due:
                    item.due = now + item.lease_seconds / 3
            for item in due:
                self.renew(item)

    @staticmethod
    def renew(item: _Held) -> None:
        now = utcnow()
        try:
            context.store().update(
                item.job_id, lambda job: lifecycle.renew_lease(job, item.task_id, now, item.lease_seconds)
            )
        except Exception:  # Redis away for a moment: the next round tries again, the lease has slack
            log.warning("could not renew the lease of job %s", item.job_id, exc_info=True)


KEEPER = LeaseKeeper()
