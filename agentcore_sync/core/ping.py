"""Deciding what ``/ping`` answers, and remembering when that answer changed.

Priority: a forced status, then the custom ``@ping`` function, then the
automatic status (``HealthyBusy`` while tasks are active or invocations are
saturated, here or, under gunicorn ``-w N``, on another worker). A custom
function that fails, returns junk, or asks for the status itself falls back
to automatic, so ``/ping`` always has an answer.

The automatic status follows busy flags (:mod:`.busy`) that record their flips
cheaply; the tracker takes them in order whenever it is asked, and from its
log thread soon after they happen, so that every change is recorded with its
time and cause, and logged.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..models import PingStatus
from .busy import BusyFlag, Flip
from .pool import ThreadPool

if TYPE_CHECKING:
    from .cluster import WorkerBoard

logger = logging.getLogger("agentcore_sync.ping")

_HEALTHY = PingStatus.HEALTHY
_BUSY = PingStatus.HEALTHY_BUSY

#: A status, and why it is the status.
Decision = tuple[PingStatus, str]
#: One change: previous status, new status, cause, wall-clock time, context of its thread.
Change = tuple[PingStatus, PingStatus, str, float, contextvars.Context]
#: Changes waiting to be logged: how many, the first and the last of them.
Run = tuple[int, Change, Change]


class PingTracker:
    """Computes the ping status and keeps ``time_of_last_update`` truthful."""

    def __init__(self, flags: Sequence[BusyFlag], custom_timeout: float = 0.5) -> None:
        self._flags = tuple(flags)
        for flag in self._flags:
            flag.on_flip = self._flipped
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
        # The custom function's latest answer and the function that gave it; None
        # once its latest call failed or hung. Replaced whole, one reference at a
        # time, so it needs no lock: whoever reads it gets one answer or the other.
        self._last_custom: tuple[Callable[[], PingStatus | str], PingStatus] | None = None
        # _lock guards _status, _changed_at, _seen and _unlogged. Invariants:
        # _changed_at is the wall-clock time at which the status last became
        # _status; _seen[i] is whether _flags[i] was busy as of its last flip
        # taken; _unlogged holds the changes not yet handed to the log, in order.
        # Lock order: this one, then the flags' sources' (take() under it); the
        # custom function and the flags' settle hooks run without it; the board
        # is read and written under it but takes no lock of its own for that.
        self._lock = threading.Lock()
        self._status = _HEALTHY
        self._changed_at = time.time()
        self._seen = [flag.busy for flag in self._flags]
        self._unlogged: list[Run] = []
        # Set while this thread runs the custom function: a custom function that
        # asks for the status gets the automatic one instead of recursing.
        self._local = threading.local()
        self._warned_recursion = False

    def current(self, cause: str | None = None) -> PingStatus:
        """The status now; a change is recorded at once and logged soon after.

        Asks the custom function: for ``/ping`` and ``get_current_ping_status()``.
        """
        return self._decide(ask_custom=True, cause=cause)

    def current_without_custom(self, cause: str | None = None) -> PingStatus:
        """The status now, as far as it is known without asking the custom function.

        The forced status, else the custom function's latest answer, else the
        automatic status. For the runtime's own bookkeeping (a task's end, a
        forced status cleared): a custom function may be slow, and must only
        cost the callers that asked for it.
        """
        return self._decide(ask_custom=False, cause=cause)

    def force(self, status: PingStatus | None) -> None:
        """Report ``status`` whatever else holds, until forced to None."""
        self.forced = status
        self.current_without_custom(
            cause="forced" if status is not None else "forced status cleared"
        )

    def snapshot(self) -> tuple[PingStatus, float]:
        """The status and the time it last changed, as ``/ping`` reports them."""
        status = self.current()
        return status, self._changed_at

    # -- deciding -----------------------------------------------------------

    def _decide(self, ask_custom: bool, cause: str | None) -> PingStatus:
        status = self._settle(self._override(ask_custom), cause)
        if self._unlogged:
            _change_log.schedule(self)
        return status

    def _settle(self, override: Decision | None, cause: str | None = None) -> PingStatus:
        """Take the flags' flips, then decide the status now; changes are recorded."""
        for flag in self._flags:
            if flag.settle is not None:
                flag.settle()
        board = self.board
        others_busy = board is not None and board.others_busy()
        with self._lock:
            self._take_flips(override, others_busy)
            status, reason = override or self._automatic(others_busy)
            if status is not self._status:
                self._record(status, cause or reason, time.time(), contextvars.copy_context())
            if board is not None and override is None:
                self._changed_at = board.settle_status(status is _BUSY, self._changed_at)
        return status

    def _automatic(self, others_busy: bool) -> Decision:
        for flag, busy in zip(self._flags, self._seen, strict=True):
            if busy:
                return _BUSY, flag.while_busy
        if others_busy:
            return _BUSY, "busy on another worker"
        return _HEALTHY, "nothing active"

    def _override(self, ask_custom: bool) -> Decision | None:
        """The forced status or the custom function's; None for the automatic one.

        Without ``ask_custom`` (the log thread, a task's end), a custom function
        is taken to still answer what it last did, and the automatic status is
        used if it has no answer yet (or its latest call failed): only a ping
        asks it again.
        """
        forced = self.forced
        if forced is not None:
            return forced, "forced"
        custom = self.custom
        if custom is None:
            return None
        if not ask_custom:
            last = self._last_custom
            if last is not None and last[0] is custom:
                return last[1], "custom ping function"
            return None
        if getattr(self._local, "in_custom", False):
            if not self._warned_recursion:
                self._warned_recursion = True
                logger.warning(
                    "Custom ping function called get_current_ping_status(); "
                    "it gets the automatic status instead of recursing"
                )
            return None
        return self._call_custom(custom)

    def _call_custom(self, custom: Callable[[], PingStatus | str]) -> Decision | None:
        hung = self._hung
        if hung is not None and not hung.done():
            self._last_custom = None
            return None
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
            status = PingStatus(future.result(self.custom_timeout))
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
        else:
            self._last_custom = custom, status
            return status, "custom ping function"
        self._last_custom = None
        return None

    # -- recording changes (under _lock) ------------------------------------

    def _take_flips(self, override: Decision | None, others_busy: bool) -> None:
        """Replay the flips since the last look, in order, recording each change they made."""
        taken = []
        for index, flag in enumerate(self._flags):
            if flag.flipped:
                flips, count = flag.take()
                if flips:
                    taken.append((index, flag, flips, count))
        if not taken:
            return
        seen = self._seen
        if len(taken) == 1 and self._follows(taken[0][0], override, others_busy):
            # The common case, one flag flipping while nothing else holds the
            # status: every flip changed it. O(1), however many tasks of
            # microseconds came and went since the last look.
            index, flag, flips, count = taken[0]
            seen[index] = flips[-1][0]
            self._record_flips(flag, flips[0], flips[-1], count)
            return
        events = sorted(
            ((flip, index, flag) for index, flag, flips, _ in taken for flip in flips),
            key=lambda event: event[0][1],
        )
        # Flips past BusyFlag.KEPT were not kept; they happened just before their
        # flag's last flip, and changed the status if it followed that flag then.
        unkept = {index: (count - len(flips), flips[-1]) for index, _, flips, count in taken}
        for flip, index, flag in events:
            skipped, last = unkept[index]
            following = flip is last and self._follows(index, override, others_busy)
            seen[index] = flip[0]
            status = override[0] if override else self._automatic(others_busy)[0]
            if following and skipped:
                self._record(status, flag.cause(flip), flip[1], flip[3], skipped + 1)
            elif status is not self._status:
                self._record(status, flag.cause(flip), flip[1], flip[3])

    def _follows(self, index: int, override: Decision | None, others_busy: bool) -> bool:
        """Whether flag ``index`` alone decides the status now."""
        if override is not None or others_busy:
            return False
        return not any(busy for i, busy in enumerate(self._seen) if i != index)

    def _record_flips(self, flag: BusyFlag, first: Flip, last: Flip, count: int) -> None:
        def change(flip: Flip) -> Change:
            busy = flip[0]
            return _status_of(not busy), _status_of(busy), flag.cause(flip), flip[1], flip[3]

        self._status = _status_of(last[0])
        self._changed_at = last[1]
        self._log_later(count, change(first), change(last) if count > 1 else None)

    def _record(
        self,
        status: PingStatus,
        cause: str,
        at: float,
        context: contextvars.Context,
        count: int = 1,
    ) -> None:
        """The status became ``status`` at ``at`` (after ``count`` changes, the last this one)."""
        previous = self._status
        if previous is status:  # an even number of changes, not kept one by one
            previous = _status_of(status is not _BUSY)
        change = (previous, status, cause, at, context)
        self._status = status
        self._changed_at = at
        self._log_later(count, change, None)

    def _log_later(self, count: int, first: Change, last: Change | None) -> None:
        unlogged = self._unlogged
        if len(unlogged) < MAX_UNLOGGED:
            unlogged.append((count, first, last or first))
        else:
            # Bounded even while the log cannot keep up: the oldest run absorbs the rest.
            merged, head, _ = unlogged[-1]
            unlogged[-1] = (merged + count, head, last or first)

    # -- logging (on the log thread) ----------------------------------------

    def _flipped(self) -> None:
        _change_log.schedule(self)

    def _write_changes(self) -> None:
        """Take the flips, then log every change not yet logged."""
        self._settle(self._override(ask_custom=False))
        with self._lock:
            runs, self._unlogged = self._unlogged, []
        if not runs or not logger.isEnabledFor(logging.INFO):
            return
        total = sum(count for count, _, _ in runs)
        if total == len(runs) and total <= LINES_PER_WRITE:
            for _, change, _ in runs:
                previous, status, cause, at, context = change
                _log(context, at, "Ping status changed: %s -> %s (%s)", (previous, status, cause))
            return
        first, last = runs[0][1], runs[-1][2]
        _log(
            last[4],
            last[3],
            "Ping status changed %d times in %.3fs, faster than logged one by one "
            "(first %s -> %s (%s), last %s -> %s (%s)); now %s",
            (total, last[3] - first[3], *first[:3], *last[:3], last[1]),
        )


def _status_of(busy: bool) -> PingStatus:
    return _BUSY if busy else _HEALTHY


def _log(context: contextvars.Context, at: float, message: str, args: tuple[Any, ...]) -> None:
    args = tuple(arg.value if isinstance(arg, PingStatus) else arg for arg in args)
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, args, None)
    record.created = at
    record.msecs = (at - int(at)) * 1000
    context.run(logger.handle, record)


class _ChangeLog:
    """The daemon thread that logs the trackers' status changes, shortly after.

    Logging two lines for a task that starts and ends would cost more than the
    task bookkeeping itself, on the task's own thread, and a log that blocks
    (a full pipe) must never block a task or a ping. So trackers schedule
    themselves here; the thread waits ``COALESCE`` seconds, so that a burst of
    changes is logged as one line that counts them, then writes.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._after_fork)

    def _reset(self) -> None:
        # _lock guards _waiting, _writing and _thread. Invariants: a tracker is in
        # _waiting from schedule() until the thread takes it to write; _writing
        # counts trackers taken and not yet written; once anything was
        # scheduled, _thread runs.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: dict[PingTracker, None] = {}
        self._writing = 0
        self._thread: threading.Thread | None = None

    def schedule(self, tracker: PingTracker) -> None:
        with self._lock:
            if tracker in self._waiting:
                return
            self._waiting[tracker] = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agentcore-ping-log", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._wake.wait()
            time.sleep(COALESCE)
            with self._lock:
                trackers = list(self._waiting)
                self._waiting.clear()
                self._writing = len(trackers)
            for tracker in trackers:
                try:
                    tracker._write_changes()
                except Exception:
                    logger.exception("Logging ping status changes failed")
            with self._lock:
                self._writing = 0

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until every scheduled change is logged (at exit, and for tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._waiting and not self._writing:
                    return
            time.sleep(0.001)

    def _after_fork(self) -> None:
        # The thread did not survive the fork; what the parent had scheduled
        # is this process's to log now.
        waiting = list(self._waiting)
        self._reset()
        for tracker in waiting:
            self.schedule(tracker)


#: Seconds the log thread waits after being woken, gathering changes into one write.
COALESCE = 0.005
#: Changes logged one line each in one write, at most; more make one counted line.
LINES_PER_WRITE = 8
#: Runs of changes waiting for the log, at most; more are merged into the last.
MAX_UNLOGGED = 64
_change_log = _ChangeLog()
atexit.register(_change_log.flush)
