"""Admission control: never let invocations take the last server threads.

A threaded server has a fixed number of threads. When long invocations hold
all of them, ``/ping`` waits in the queue and the managed runtime takes the
agent for dead. Invocations past ``limit`` are therefore refused at once with
503 and ``Retry-After``, leaving threads for ``/ping``; while at the limit the
automatic status is ``HealthyBusy``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class InvocationLimiter:
    """Counts invocations in flight and refuses those past ``limit``."""

    retry_after = 1

    def __init__(
        self, limit: int | None = None, on_saturation_change: Callable[[str], None] | None = None
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"max_concurrent_invocations must be at least 1, got {limit}")
        self.limit = limit
        self._on_saturation_change = on_saturation_change
        # _lock guards _in_flight. Invariant: 0 <= _in_flight, and
        # _in_flight <= limit whenever limit is set.
        self._lock = threading.Lock()
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def saturated(self) -> bool:
        limit = self.limit
        return limit is not None and self._in_flight >= limit

    def try_acquire(self) -> bool:
        with self._lock:
            limit = self.limit
            if limit is not None and self._in_flight >= limit:
                return False
            self._in_flight += 1
            now_saturated = self._in_flight == limit
        if now_saturated and self._on_saturation_change is not None:
            self._on_saturation_change("invocations saturated")
        return True

    def release(self) -> None:
        with self._lock:
            was_saturated = self.limit is not None and self._in_flight >= self.limit
            self._in_flight -= 1
        if was_saturated and self._on_saturation_change is not None:
            self._on_saturation_change("invocation slot freed")
