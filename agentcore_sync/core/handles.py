"""The handle of a background task: its id, its outcome, and a way to cancel it.

``TaskHandle`` is what ``fn.start()`` and ``app.submit()`` return: a future of
one small object, decided by the executor through its ``set_*`` methods, as
``concurrent.futures.Future`` is by its executors. A coroutine's handle can
also be cancelled while it runs, and is cancelled at its maximum duration
(``Deadlines``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol


class HandleOwner(Protocol):
    """What a handle asks of the executor that runs its task."""

    def record_cancelled(self, task_id: int, error: str) -> None:
        """Record the task cancelled, with ``error`` as the reason."""

    def call_on_loop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop's thread, soon."""


class _HandleState(enum.Enum):
    """A handle's states. A coroutine's handle stays pending until it ends: it can be
    cancelled as long as it runs; a thread's is running once it began, past cancelling."""

    PENDING = enum.auto()
    RUNNING = enum.auto()
    SUCCEEDED = enum.auto()
    FAILED = enum.auto()
    CANCELLED = enum.auto()


# Module names for the members: read on every move of every handle.
_PENDING = _HandleState.PENDING
_RUNNING = _HandleState.RUNNING
_SUCCEEDED = _HandleState.SUCCEEDED
_FAILED = _HandleState.FAILED
_CANCELLED = _HandleState.CANCELLED
_UNDECIDED = (_PENDING, _RUNNING)


class TaskHandle:
    """A background task: its id, and a way to wait for or cancel it.

    The handle is the task's future too: one small object per task where a
    ``concurrent.futures.Future`` brings eleven (a Condition, an RLock, a deque,
    two lists, five bound methods), each walked by the cyclic collector with the
    GIL held while thousands of tasks are alive.
    """

    __slots__ = ("_owner", "_state", "_value", "_waiter", "task_id")

    # Guards _state, _value and _waiter of every handle: a lock each would be one
    # more object per task, and each is held for a few instructions. Invariant:
    # _state leaves _UNDECIDED at most once, together with _value; a _waiter is only
    # made while _state is undecided, and is set once it is not.
    _lock = threading.Lock()
    # A child forked while another thread held it must not inherit it held
    # (concurrent.futures does the same for its global lock).
    os.register_at_fork(after_in_child=_lock._at_fork_reinit)

    def __init__(self, task_id: int, owner: HandleOwner) -> None:
        self.task_id = task_id
        self._owner = owner
        self._state = _PENDING
        self._value: Any = None
        self._waiter: threading.Event | None = None  # made by the first result() that waits

    def done(self) -> bool:
        return self._state not in _UNDECIDED

    def result(self, timeout: float | None = None) -> Any:
        """The task's value; raises its exception, ``CancelledError`` or ``TimeoutError``."""
        with self._lock:
            waiter = self._waiter
            if waiter is None and self._state in _UNDECIDED:
                waiter = self._waiter = threading.Event()
        if waiter is not None and not waiter.wait(timeout):
            raise TimeoutError
        # Decided: _state and _value change no more, and are read without the lock.
        if self._state is _CANCELLED:
            raise concurrent.futures.CancelledError
        if self._state is _FAILED:
            try:
                raise self._value
            finally:
                # As in concurrent.futures: no cycle through this frame and the traceback.
                self = None
        return self._value

    def cancel(self) -> bool:
        """Cancel a queued task or a coroutine; a running thread cannot be stopped."""
        before = self._move(_CANCELLED, allowed=(_PENDING,))
        if before is _PENDING:
            self._on_cancel()
        return before in (_PENDING, _CANCELLED)

    # -- for the executor (as concurrent.futures.Future's set_* methods) ---

    def set_running_or_notify_cancel(self) -> bool:
        """Mark the task running, unless it was cancelled while queued (then False)."""
        return self._move(_RUNNING, allowed=(_PENDING,)) is _PENDING

    def set_result(self, value: Any) -> None:
        self._move(_SUCCEEDED, value)

    def set_exception(self, exc: BaseException) -> None:
        self._move(_FAILED, exc)

    def set_cancelled(self) -> None:
        self._move(_CANCELLED)

    def _on_cancel(self) -> None:
        """Record the cancellation that cancel() decided."""
        self._owner.record_cancelled(self.task_id, "Cancelled before it started")

    def _move(
        self,
        state: _HandleState,
        value: Any = None,
        allowed: tuple[_HandleState, ...] = _UNDECIDED,
    ) -> _HandleState:
        """Go to ``state`` (with ``value``) if the current state is in ``allowed``;
        return the state before."""
        with self._lock:
            before = self._state
            if before not in allowed:
                return before
            self._state, self._value = state, value
            waiter = self._waiter if state not in _UNDECIDED else None
        if waiter is not None:
            waiter.set()
        return before

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<TaskHandle {self.task_id} {state}>"


class CoroutineHandle(TaskHandle):
    """The handle of a coroutine task, which cancel() stops on the loop."""

    __slots__ = ("_task", "expired")

    def __init__(self, task_id: int, owner: HandleOwner) -> None:
        super().__init__(task_id, owner)
        # Both are set on the loop thread only: _task when the coroutine begins,
        # expired when it outlives its maximum duration.
        self._task: asyncio.Task[Any] | None = None
        self.expired = False

    def begin(self, task: asyncio.Task[Any] | None) -> None:
        """On the loop: the coroutine began as ``task``, which cancel() stops."""
        self._task = task

    def _on_cancel(self) -> None:
        # Recorded here, not left to the task: a task cancelled before the loop
        # started it never runs at all.
        self._owner.record_cancelled(self.task_id, "Cancelled")
        self._owner.call_on_loop(self._stop)

    def _stop(self) -> None:
        """On the loop: cancel the task if it began (if not, it will not)."""
        if self._task is not None:
            self._task.cancel()

    def expire(self) -> None:
        """On the loop: the task ran for its maximum duration."""
        self.expired = True
        self._stop()


class Deadlines:
    """Cancels coroutine tasks at their maximum duration, with one timer of the loop.

    A timer per task would add two objects for the collector and a heap push to
    every start. Tasks of one maximum duration come due in the order they began,
    so each maximum duration keeps its tasks in a dict in that order, and only the
    first ones can be due. Used on the loop thread only.
    """

    def __init__(self) -> None:
        # Maximum duration -> {handle: deadline in loop time} of the tasks running,
        # in the order they began.
        self._running: dict[float, dict[CoroutineHandle, float]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, handle: CoroutineHandle, max_duration: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_duration
        self._running.setdefault(max_duration, {})[handle] = deadline
        if self._timer is None or deadline < self._timer.when():
            self._arm(loop, deadline)

    def remove(self, handle: CoroutineHandle, max_duration: float) -> None:
        self._running[max_duration].pop(handle, None)  # gone already if it expired

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._cancel_due)

    def _cancel_due(self) -> None:
        """Cancel the tasks now due, once each, and wait for the next deadline."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._timer = None
        upcoming = []
        for running in self._running.values():
            due = []
            for handle, deadline in running.items():
                if deadline > now:
                    upcoming.append(deadline)
                    break
                due.append(handle)
            for handle in due:
                del running[handle]
                handle.expire()
        if upcoming:
            self._arm(loop, min(upcoming))
