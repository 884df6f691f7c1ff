"""Admission control: never let invocations take the last server threads.

A threaded server has a fixed number of threads. When long invocations hold
all of them, ``/ping`` waits in the queue and the managed runtime takes the
agent for dead. Invocations past ``limit`` are therefore refused at once with
503 and ``Retry-After``, leaving threads for ``/ping``; while at the limit the
automatic status is ``HealthyBusy``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from .busy import BusyFlag


class InvocationLimiter:
    """Counts invocations in flight and refuses those past ``limit``."""

    retry_after = 1

    def __init__(self, limit: int | None = None, busy_while_invoking: bool = False) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"max_concurrent_invocations must be at least 1, got {limit}")
        self.limit = limit
        # Releases handed over by release_soon(), one token each. A SimpleQueue,
        # because its put() takes no lock that a finalizer could find held by
        # its own thread.
        self._released: queue.SimpleQueue[None] = queue.SimpleQueue()
        # _lock guards _in_flight. Invariants: a release in _released is owed and
        # not yet applied, so _in_flight counts the slots held plus those owed;
        # 0 <= _in_flight, and _in_flight <= limit whenever limit is set; busy.busy
        # is whether _in_flight == limit; invoking.busy, when tracked, whether
        # _in_flight > 0; _published is whether either is busy (what publish was
        # last given). Whoever reads or changes _in_flight applies the owed
        # releases first (_apply_released), so a slot given back by
        # release_soon() is free for the next acquire and the next ping.
        # Lock order: this one, then the board's (publish) and the ping log's
        # (busy.on_flip); never taken from a finalizer.
        self._lock = threading.Lock()
        self._in_flight = 0
        #: Invocations admitted since the start, for local tools (``monitor``).
        self.admitted = 0
        #: Called under the lock with whether this process's invocations keep it busy
        #: (saturated, or any in flight with ``busy_while_invoking``), on every change
        #: of that (multi-worker boards).
        self.publish: Callable[[bool], None] | None = None
        self.busy = BusyFlag(
            self._lock, "invocations saturated", "invocation slot freed", "invocations saturated"
        )
        self.busy.settle = self._settle
        #: Whether any invocation is in flight; None unless ``busy_while_invoking``.
        self.invoking: BusyFlag | None = None
        if busy_while_invoking:
            in_flight = "invocation in flight"
            self.invoking = BusyFlag(self._lock, in_flight, "no invocation in flight", in_flight)
            self.invoking.settle = self._settle
        self._published = False

    @property
    def in_flight(self) -> int:
        self._settle()
        return self._in_flight

    @property
    def saturated(self) -> bool:
        self._settle()
        return self.busy.busy

    def try_acquire(self) -> bool:
        with self._lock:
            self._apply_released()
            limit = self.limit
            if limit is not None and self._in_flight >= limit:
                return False
            self._in_flight += 1
            self.admitted += 1
            if self._in_flight == 1 and self.invoking is not None:
                self._flip(self.invoking, True)
            if self._in_flight == limit:
                self._flip(self.busy, True)
        return True

    def release(self) -> None:
        with self._lock:
            self._apply_released()
            self._release()

    def release_soon(self) -> None:
        """Give a slot back from where taking the lock could deadlock: a finalizer.

        A garbage collection can run ``__del__`` on a thread that holds this
        limiter's lock; release() would then wait for itself. This only notes
        the release, applied by the next acquire, release, read or ping.
        """
        self._released.put(None)

    def _settle(self) -> None:
        """Apply the releases owed, if any (the lock is taken only then)."""
        if not self._released.empty():
            with self._lock:
                self._apply_released()

    def _apply_released(self) -> None:
        """Apply each release owed, now. Hold _lock."""
        released = self._released
        # Only holders of _lock take from the queue, so a non-empty queue stays so.
        while not released.empty():
            released.get_nowait()
            self._release()

    def _release(self) -> None:
        self._in_flight -= 1
        if self.busy.busy:
            self._flip(self.busy, False)
        if self._in_flight == 0 and self.invoking is not None:
            self._flip(self.invoking, False)

    def _flip(self, flag: BusyFlag, busy: bool) -> None:
        # Timed here, under the lock, so that the flips' times follow their order.
        flag.flip(busy, time.time())
        published = self.busy.busy or (self.invoking is not None and self.invoking.busy)
        if published is not self._published:
            self._published = published
            if self.publish is not None:
                self.publish(published)


class HeldSlot:
    """An invocation slot held by an answer that is still being sent.

    Calling it gives the slot back, once; a slot whose answer is dropped
    without being closed is given back when it is collected.
    """

    __slots__ = ("_limiter",)

    def __init__(self, limiter: InvocationLimiter) -> None:
        self._limiter: InvocationLimiter | None = limiter

    def __call__(self) -> None:
        # The swap makes a second call, or the finalizer after a call, a no-op.
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release()

    def __del__(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release_soon()
