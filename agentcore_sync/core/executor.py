"""Background work: ``fn.start(...)`` and ``app.submit(fn, ...)``.

Plain callables run on a bounded pool of threads, coroutines on the runtime's
event loop. Every task is in the registry from the moment it is submitted
(``queued``, then ``running``) until its outcome is recorded, and leaves one
record in the result store: the start-and-poll pattern in one line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..models import RecordStatus, TaskState
from .callables import Kind, kind_of
from .context import request_id_var, session_id_var
from .loop import contain
from .pool import ThreadPool
from .processes import process_identity
from .serialization import to_jsonable

if TYPE_CHECKING:
    from ..stores.resilient import ResilientStore
    from .loop import LoopThread
    from .ping import PingTracker
    from .registry import TaskRegistry

logger = logging.getLogger("agentcore_sync.tasks")

#: How long a read waits for crash recovery to finish on a just-opened store.
RECOVERY_WAIT = 5.0

#: How long shutdown waits for outcomes that are being written when the grace ends.
FINISH_WAIT = 2.0


class ShuttingDown(RuntimeError):
    """New background work was submitted after shutdown began."""


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

    __slots__ = ("_executor", "_state", "_value", "_waiter", "task_id")

    # Guards _state, _value and _waiter of every handle: a lock each would be one
    # more object per task, and each is held for a few instructions. Invariant:
    # _state leaves _UNDECIDED at most once, together with _value; a _waiter is only
    # made while _state is undecided, and is set once it is not.
    _lock = threading.Lock()
    # A child forked while another thread held it must not inherit it held
    # (concurrent.futures does the same for its global lock).
    os.register_at_fork(after_in_child=_lock._at_fork_reinit)

    def __init__(self, task_id: int, executor: BackgroundExecutor) -> None:
        self.task_id = task_id
        self._executor = executor
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

    def _on_cancel(self) -> None:
        """Record the cancellation that cancel() decided."""
        self._executor._finish(
            self.task_id, RecordStatus.CANCELLED, error="Cancelled before it started"
        )

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


class _CoroutineHandle(TaskHandle):
    """The handle of a coroutine task, which cancel() stops on the loop."""

    __slots__ = ("_expired", "_task")

    def __init__(self, task_id: int, executor: BackgroundExecutor) -> None:
        super().__init__(task_id, executor)
        # Both are set on the loop thread only: _task when the coroutine begins,
        # _expired when it outlives its maximum duration.
        self._task: asyncio.Task[Any] | None = None
        self._expired = False

    def _on_cancel(self) -> None:
        # Recorded here, not left to the task: a task cancelled before the loop
        # started it never runs at all.
        self._executor._finish(self.task_id, RecordStatus.CANCELLED, error="Cancelled")
        self._executor._loop.loop.call_soon_threadsafe(self._stop)

    def _stop(self) -> None:
        """On the loop: cancel the task if it began (if not, it will not)."""
        if self._task is not None:
            self._task.cancel()

    def _expire(self) -> None:
        """On the loop: the task ran for its maximum duration."""
        self._expired = True
        self._stop()


class _Deadlines:
    """Cancels coroutine tasks at their maximum duration, with one timer of the loop.

    A timer per task would add two objects for the collector and a heap push to
    every start. Tasks of one maximum duration come due in the order they began,
    so each maximum duration keeps its tasks in a dict in that order, and only the
    first ones can be due. Used on the loop thread only.
    """

    def __init__(self) -> None:
        # Maximum duration -> {handle: deadline in loop time} of the tasks running,
        # in the order they began.
        self._running: dict[float, dict[_CoroutineHandle, float]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, handle: _CoroutineHandle, max_duration: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_duration
        self._running.setdefault(max_duration, {})[handle] = deadline
        if self._timer is None or deadline < self._timer.when():
            self._arm(loop, deadline)

    def remove(self, handle: _CoroutineHandle, max_duration: float) -> None:
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
                handle._expire()
        if upcoming:
            self._arm(loop, min(upcoming))


class BackgroundExecutor:
    """Submits, runs and records background tasks for one runtime."""

    def __init__(
        self,
        registry: TaskRegistry,
        ping: PingTracker,
        loop: LoopThread,
        store: Callable[[], ResilientStore],
        owner: str,
        max_workers: int,
        listeners: list[Callable[[dict[str, Any]], None]] | None = None,
    ) -> None:
        self._registry = registry
        self._ping = ping
        self._loop = loop
        self._store = store
        self.owner = owner
        self._listeners = listeners if listeners is not None else []
        self._pool = ThreadPool(max_workers)
        self._identity = process_identity(os.getpid()) or str(os.getpid())
        # _lock guards _records, _finishing and _accepting. Invariants: _records
        # holds the record of every task submitted here until its outcome has been
        # put in the store; _finishing holds the ids of those whose outcome is being
        # written (so exactly one writer records it); once _accepting is False it
        # stays False and nothing is added. It is a leaf: the registry, the ping
        # tracker, the store and the listeners are called without it.
        self._lock = threading.Lock()
        self._records: dict[int, dict[str, Any]] = {}
        self._finishing: set[int] = set()
        self._accepting = True
        self._idle = threading.Condition(self._lock)
        # Set once crash recovery has run on the store, so that a poll right
        # after a restart reads "interrupted" rather than a dead "running".
        self._recovered = threading.Event()
        self._deadlines = _Deadlines()

    # -- submitting ---------------------------------------------------------

    def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str,
        metadata: dict[str, Any] | None,
        max_duration: float | None,
        kind: Kind | None = None,
    ) -> TaskHandle:
        """Register ``func(*args, **kwargs)`` as a queued task and hand it to where it runs.

        ``kind`` may be given when known (``@async_task`` reads it once).
        """
        if kind is None:
            kind = Kind.COROUTINE if inspect.iscoroutine(func) else kind_of(func)
        context = contextvars.copy_context()
        # The store first: a store that cannot be opened fails the start before
        # anything is registered, so no task is left behind.
        store = self._store()
        task_id = self._registry.add(
            name, metadata, state=TaskState.QUEUED, max_duration=max_duration
        )
        now = time.time()
        record = {
            "task_id": task_id,
            "name": name,
            "status": RecordStatus.QUEUED,
            "result": None,
            "error": None,
            "created_at": now,
            "started_at": None,
            "finished_at": None,
            "duration": None,
            "ping_status_after": None,
            "request_id": request_id_var.get(),
            "session_id": session_id_var.get(),
            "owner": self.owner,
            "process": self._identity,
        }
        with self._lock:
            accepting = self._accepting
            if accepting:
                self._records[task_id] = record
        if not accepting:
            self._registry.complete(task_id)
            raise ShuttingDown("The runtime is shutting down and takes no new background work")
        store.put(record)  # the store keeps a copy
        if kind in (Kind.COROUTINE, Kind.ASYNC_GENERATOR):
            return self._submit_coroutine(task_id, func, args, kwargs, kind, max_duration, context)
        return self._submit_thread(task_id, func, args, kwargs, kind, context)

    def submit_later(
        self,
        func: Callable[..., Any],
        kind: Kind,
        name: str,
        metadata: dict[str, Any] | None,
        max_duration: float | None,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> TaskHandle:
        """``fn.start(*args, **kwargs)`` of an ``@async_task`` function."""
        return self.submit(
            func, args, kwargs, name=name, metadata=metadata, max_duration=max_duration, kind=kind
        )

    def _submit_thread(
        self,
        task_id: int,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: Kind,
        context: contextvars.Context,
    ) -> TaskHandle:
        handle = TaskHandle(task_id, self)
        self._pool.submit(self._run_thread, handle, func, args, kwargs, kind, context)
        return handle

    def _run_thread(
        self,
        handle: TaskHandle,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: Kind,
        context: contextvars.Context,
    ) -> None:
        """On a pool thread: run the task unless it was cancelled while queued."""
        if handle._move(_RUNNING, allowed=(_PENDING,)) is not _PENDING:
            return
        task_id = handle.task_id
        self._started(task_id)
        try:
            value = context.run(func, *args, **kwargs)
            if kind is Kind.GENERATOR:
                value = context.run(list, value)
        except BaseException as exc:
            self._finish(task_id, RecordStatus.FAILED, error=exc)
            handle._move(_FAILED, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._finish(task_id, RecordStatus.SUCCEEDED, result=value)
            handle._move(_SUCCEEDED, value)

    def _submit_coroutine(
        self,
        task_id: int,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: Kind,
        max_duration: float | None,
        context: contextvars.Context,
    ) -> TaskHandle:
        handle = _CoroutineHandle(task_id, self)
        self._loop.start(
            self._run_coroutine(handle, func, args, kwargs, kind, max_duration), context
        )
        return handle

    async def _run_coroutine(
        self,
        handle: _CoroutineHandle,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        kind: Kind,
        max_duration: float | None,
    ) -> None:
        """On the loop: run the task, record its outcome and decide its handle.

        One coroutine holding its arguments, where closures would make a cell
        each; it raises nothing but CancelledError (see LoopThread.start).
        """
        if handle.done():  # cancelled before the loop came to it
            if inspect.iscoroutine(func):
                func.close()
            return
        task_id = handle.task_id
        handle._task = asyncio.current_task()
        self._started(task_id)
        if max_duration is not None:
            self._deadlines.add(handle, max_duration)
        try:
            if kind is Kind.ASYNC_GENERATOR:
                value = [item async for item in func(*args, **kwargs)]
            else:
                value = await (func if inspect.iscoroutine(func) else func(*args, **kwargs))
        except asyncio.CancelledError:
            if handle._expired:
                error = f"Exceeded its maximum duration of {max_duration:g}s"
                logger.warning("Background task %s cancelled: %s", task_id, error)
            else:
                error = "Cancelled"
            self._finish(task_id, RecordStatus.CANCELLED, error=error)
            handle._move(_CANCELLED)
            raise
        except BaseException as exc:
            self._finish(task_id, RecordStatus.FAILED, error=exc)
            # Not re-raised: asyncio would stop the loop itself on SystemExit or
            # KeyboardInterrupt, and nothing else awaits this task.
            handle._move(_FAILED, contain(exc))
        else:
            self._finish(task_id, RecordStatus.SUCCEEDED, result=value)
            handle._move(_SUCCEEDED, value)
        finally:
            if max_duration is not None:
                self._deadlines.remove(handle, max_duration)

    # -- recording ----------------------------------------------------------

    def _started(self, task_id: int) -> None:
        self._registry.set_state(task_id, TaskState.RUNNING)
        with self._lock:
            record = self._records.get(task_id)
            if record is None:
                return
            record["status"] = RecordStatus.RUNNING
            record["started_at"] = time.time()
            snapshot = dict(record)
        self._store().put(snapshot)

    def _finish(
        self, task_id: int, status: RecordStatus, *, result: Any = None, error: Any = None
    ) -> None:
        """Record the task's outcome: exactly once, whoever gets here first."""
        with self._lock:
            record = self._records.get(task_id)
            if record is None or task_id in self._finishing:
                return
            self._finishing.add(task_id)
            final = dict(record)
        self._registry.complete(task_id)
        finished = time.time()
        final["status"] = status
        final["finished_at"] = finished
        final["duration"] = finished - (final["started_at"] or final["created_at"])
        if status is RecordStatus.SUCCEEDED:
            final["result"] = to_jsonable(result)
        if isinstance(error, BaseException):
            final["error"] = f"{type(error).__name__}: {error}"
            if status is RecordStatus.FAILED:
                logger.error(
                    "Background task %s (%s) failed", task_id, final["name"], exc_info=error
                )
        elif error is not None:
            final["error"] = str(error)
        # Not current(): that asks the custom @ping function, which may be slow and
        # would run here, on the thread that ended the task (the loop, for coroutines).
        final["ping_status_after"] = self._ping.current_without_custom().value
        self._store().put(final)
        for listener in self._listeners:
            try:
                listener(final)
            except Exception:
                logger.exception("A task listener failed")
        with self._lock:
            # Only now, with the outcome handed to the store, is the task off the books.
            del self._records[task_id]
            self._finishing.discard(task_id)
            if not self._records:
                self._idle.notify_all()

    def get(self, task_id: int) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(task_id)
            if record is not None:
                return dict(record)
        store = self._store()
        self._recovered.wait(RECOVERY_WAIT)
        return store.get(task_id)

    # -- recovery and shutdown ----------------------------------------------

    def recover(self) -> int:
        """Record as interrupted the unfinished tasks of this server's dead processes."""
        try:
            return self._recover()
        finally:
            self._recovered.set()

    def _recover(self) -> int:
        count = 0
        for record in self._store().unfinished(self.owner):
            process = record.get("process")
            if process == self._identity:
                continue
            pid = int(str(process).split(":", 1)[0]) if process else 0
            if pid and process_identity(pid) == process:
                continue  # a sibling worker that is still alive owns it
            record.update(
                status=RecordStatus.INTERRUPTED,
                finished_at=time.time(),
                error="Its process ended before the task finished",
            )
            self._store().put(record)
            count += 1
        if count:
            logger.warning("Recorded %d task(s) of a stopped process as interrupted", count)
        return count

    def shutdown(self, grace: float) -> int:
        """Stop taking work, wait up to ``grace`` seconds, record the rest interrupted."""
        deadline = time.monotonic() + grace
        with self._lock:
            self._accepting = False
            while self._records and (remaining := deadline - time.monotonic()) > 0:
                self._idle.wait(remaining)
            left = [task_id for task_id in self._records if task_id not in self._finishing]
        for task_id in left:
            self._finish(
                task_id,
                RecordStatus.INTERRUPTED,
                error=f"Still running when the server shut down (grace {grace:g}s)",
            )
        with self._lock:
            # Outcomes being written by their own threads are waited for briefly,
            # so that the store is not closed under them.
            drain_deadline = time.monotonic() + FINISH_WAIT
            while self._records and (remaining := drain_deadline - time.monotonic()) > 0:
                self._idle.wait(remaining)
        if left:
            logger.warning(
                "Shutdown: %d background task(s) still running after %gs recorded interrupted",
                len(left),
                grace,
            )
        return len(left)
