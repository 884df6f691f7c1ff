"""Admission control: never let invocations take the last server threads.

A threaded server has a fixed number of threads. When long invocations hold
all of them, ``/ping`` waits in the queue and the managed runtime takes the
agent for dead. Invocations past ``limit`` are therefore refused at once with
503 and ``Retry-After``, leaving threads for ``/ping``; while at the limit the
automatic status is ``HealthyBusy``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .busy import BusyFlag


class InvocationLimiter:
    """Counts invocations in flight and refuses those past ``limit``."""

    retry_after = 1

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"max_concurrent_invocations must be at least 1, got {limit}")
        self.limit = limit
        # _lock guards _in_flight. Invariants: 0 <= _in_flight, and
        # _in_flight <= limit whenever limit is set; busy.busy is whether
        # _in_flight == limit.
        self._lock = threading.Lock()
        self._in_flight = 0
        #: Called with whether saturated, under the lock, on every change (multi-worker boards).
        self.publish: Callable[[bool], None] | None = None
        self.busy = BusyFlag(
            self._lock, "invocations saturated", "invocation slot freed", "invocations saturated"
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def saturated(self) -> bool:
        return self.busy.busy

    def try_acquire(self) -> bool:
        with self._lock:
            limit = self.limit
            if limit is not None and self._in_flight >= limit:
                return False
            self._in_flight += 1
            if self._in_flight == limit:
                self._flip(True)
        return True

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self.busy.busy:
                self._flip(False)

    def _flip(self, saturated: bool) -> None:
        self.busy.flip(saturated, time.time())
        if self.publish is not None:
            self.publish(saturated)
