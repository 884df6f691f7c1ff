"""Deciding what ``/ping`` answers, and remembering when that answer changed.

Priority: a forced status, then the custom ``@ping`` function, then the
automatic status (``HealthyBusy`` while tasks are active or invocations are
saturated). A custom function that fails, returns junk, or asks for the
status itself falls back to automatic, so ``/ping`` always has an answer.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .models import PingStatus
from .pool import ThreadPool

if TYPE_CHECKING:
    from .cluster import WorkerBoard

logger = logging.getLogger("agentcore_sync.ping")

#: Returns the automatic status and the reason for it.
Automatic = Callable[[], tuple[PingStatus, str]]


class PingTracker:
    """Computes the ping status and keeps ``time_of_last_update`` truthful."""

    def __init__(self, automatic: Automatic, custom_timeout: float = 0.5) -> None:
        self._automatic = automatic
        self.forced: PingStatus | None = None
        self.custom: Callable[[], PingStatus | str] | None = None
        #: Seconds a custom function may take before the automatic status is used.
        self.custom_timeout = custom_timeout
        # The custom function runs on its own thread, so that one that hangs
        # costs a ping custom_timeout at most; while it still hangs, pings use
        # the automatic status at once rather than queue behind it.
        self._custom_thread = ThreadPool(1, name="agentcore-ping")
        #: Shared with the other workers of a gunicorn server, once joined.
        self.board: WorkerBoard | None = None
        self._hung: concurrent.futures.Future[Any] | None = None
        # _lock guards _status and _changed_at. Invariant: _changed_at is the
        # wall-clock time at which the status last became _status.
        self._lock = threading.Lock()
        self._status = PingStatus.HEALTHY
        self._changed_at = time.time()
        # Set while this thread runs the custom function: a custom function that
        # asks for the status gets the automatic one instead of recursing.
        self._local = threading.local()
        self._warned_recursion = False

    def current(self, cause: str | None = None) -> PingStatus:
        """The status now; a change from the last one is recorded and logged."""
        automatic = self.forced is None and self.custom is None
        # A custom function may take up to custom_timeout: decided outside the lock.
        decided = None if automatic else self._decide()
        with self._lock:
            # The automatic status is decided under the lock, so that two threads (a
            # task starting, another ending) cannot record their decisions in the
            # wrong order.
            status, reason = decided or self._automatic()
            previous = self._status
            if status is not previous:
                self._status = status
                self._changed_at = time.time()
            changed_at = self._changed_at
            board = self.board
            if automatic and board is not None:
                self._changed_at = board.settle_status(
                    status is PingStatus.HEALTHY_BUSY, changed_at
                )
        if status is not previous and logger.isEnabledFor(logging.INFO):
            _change_log.write(previous, status, cause or reason, changed_at)
        return status

    def snapshot(self) -> tuple[PingStatus, float]:
        """The status and the time it last changed, as ``/ping`` reports them."""
        status = self.current()
        return status, self._changed_at

    def _decide(self) -> tuple[PingStatus, str]:
        forced = self.forced
        if forced is not None:
            return forced, "forced"
        custom = self.custom
        if custom is None:
            return self._automatic()
        if getattr(self._local, "in_custom", False):
            if not self._warned_recursion:
                self._warned_recursion = True
                logger.warning(
                    "Custom ping function called get_current_ping_status(); "
                    "it gets the automatic status instead of recursing"
                )
            return self._automatic()
        return self._call_custom(custom)

    def _call_custom(self, custom: Callable[[], PingStatus | str]) -> tuple[PingStatus, str]:
        hung = self._hung
        if hung is not None and not hung.done():
            return self._automatic()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            self._local.in_custom = True
            try:
                future.set_result(custom())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                self._local.in_custom = False

        # In the caller's context: the function sees the request's ids and Flask's
        # application context as if it ran on the caller's thread.
        context = contextvars.copy_context()
        self._custom_thread.submit(lambda: context.run(run))
        try:
            return PingStatus(future.result(self.custom_timeout)), "custom ping function"
        except concurrent.futures.TimeoutError:
            self._hung = future
            logger.warning(
                "Custom ping function did not answer within %gs; using the automatic status "
                "until it returns",
                self.custom_timeout,
            )
        except BaseException as exc:
            logger.warning(
                "Custom ping function failed, using the automatic status: %s: %s",
                type(exc).__name__,
                exc,
            )
        return self._automatic()


class _ChangeLog:
    """Writes "ping status changed" lines from a background thread, in order.

    A task that starts and ends changes the status twice; formatting and writing
    two log lines would cost more than the task bookkeeping itself, on the
    task's own thread. Here each change is queued with its time and context (for
    requestId/sessionId) and logged by one daemon thread. Changes that pile up
    faster than the log is written (tasks of microseconds, back to back) are
    written as one line that counts them, so the queue stays bounded and every
    change is accounted for.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        # Changes not queued because MAX_QUEUED were waiting; reported with the next line.
        self._overflow = 0
        # _lock guards _thread. Invariant: once something was queued, _thread runs.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def write(self, previous: PingStatus, status: PingStatus, cause: str, at: float) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            self._overflow += 1  # racy by one at worst: a count, not a record
        else:
            self._queue.put((previous, status, cause, at, contextvars.copy_context()))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="agentcore-ping-log", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_QUEUED:
                    batch.append(self._queue.get_nowait())
            overflow, self._overflow = self._overflow, 0
            if len(batch) == 1 and not overflow:
                previous, status, cause, at, context = batch[0]
                self._log(
                    context,
                    at,
                    "Ping status changed: %s -> %s (%s)",
                    (previous.value, status.value, cause),
                )
                continue
            first, last = batch[0], batch[-1]
            self._log(
                last[4],
                last[3],
                "Ping status changed %d times in %.3fs, faster than logged one by one "
                "(first %s -> %s (%s), last %s -> %s (%s)); now %s",
                (
                    len(batch) + overflow,
                    last[3] - first[3],
                    first[0].value,
                    first[1].value,
                    first[2],
                    last[0].value,
                    last[1].value,
                    last[2],
                    last[1].value,
                ),
            )

    @staticmethod
    def _log(context: contextvars.Context, at: float, message: str, args: tuple[Any, ...]) -> None:
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, args, None)
        record.created = at
        record.msecs = (at - int(at)) * 1000
        context.run(logger.handle, record)

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until every queued change is written (at exit, and for tests)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.001)

    def _after_fork(self) -> None:
        self._queue = queue.SimpleQueue()
        self._overflow = 0
        self._lock = threading.Lock()
        self._thread = None


#: Changes waiting to be logged, at most; more are counted instead.
MAX_QUEUED = 10_000
_change_log = _ChangeLog()
atexit.register(_change_log.flush)
