"""Background work: ``fn.start(...)`` and ``app.submit(fn, ...)``.

Plain callables run on a bounded pool of threads, coroutines on the runtime's
event loop. Every task is in the registry from the moment it is submitted
(``queued``, then ``running``) until its outcome is recorded, and leaves one
record in the result store: the start-and-poll pattern in one line.
"""

from __future__ import annotations

import asyncio
import contextvars
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
from .handles import CoroutineHandle, Deadlines, TaskHandle
from .loop import contain
from .observers import Observer, run_in
from .observers import finished as observed_end
from .observers import started as observed_start
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
        observers: list[Observer] | None = None,
    ) -> None:
        self._registry = registry
        self._ping = ping
        self._loop = loop
        self._store = store
        self.owner = owner
        self._listeners = listeners if listeners is not None else []
        self._observers = observers if observers is not None else []
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
        self._deadlines = Deadlines()

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
        if not handle.set_running_or_notify_cancel():
            return
        task_id = handle.task_id
        name = self._started(task_id)
        observers = self._observers
        tokens = run_in(context, observers, "task_started", task_id, name) if observers else []
        try:
            value = context.run(func, *args, **kwargs)
            if kind is Kind.GENERATOR:
                value = context.run(list, value)
        except BaseException as exc:
            if observers:
                run_in(context, observers, "task_finished", tokens, "failed", repr(exc))
            self._finish(task_id, RecordStatus.FAILED, error=exc)
            handle.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if observers:
                run_in(context, observers, "task_finished", tokens, "succeeded", None)
            self._finish(task_id, RecordStatus.SUCCEEDED, result=value)
            handle.set_result(value)

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
        handle = CoroutineHandle(task_id, self)
        self._loop.start(
            self._run_coroutine(handle, func, args, kwargs, kind, max_duration), context
        )
        return handle

    async def _run_coroutine(
        self,
        handle: CoroutineHandle,
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
        handle.begin(asyncio.current_task())
        name = self._started(task_id)
        observers = self._observers
        tokens = observed_start(observers, "task_started", task_id, name) if observers else []
        outcome, error_text = RecordStatus.FAILED, None
        if max_duration is not None:
            self._deadlines.add(handle, max_duration)
        try:
            if kind is Kind.ASYNC_GENERATOR:
                value = [item async for item in func(*args, **kwargs)]
            else:
                value = await (func if inspect.iscoroutine(func) else func(*args, **kwargs))
        except asyncio.CancelledError:
            if handle.expired:
                error = f"Exceeded its maximum duration of {max_duration:g}s"
                logger.warning("Background task %s cancelled: %s", task_id, error)
            else:
                error = "Cancelled"
            outcome, error_text = RecordStatus.CANCELLED, error
            self._finish(task_id, RecordStatus.CANCELLED, error=error)
            handle.set_cancelled()
            raise
        except BaseException as exc:
            error_text = repr(exc)
            self._finish(task_id, RecordStatus.FAILED, error=exc)
            # Not re-raised: asyncio would stop the loop itself on SystemExit or
            # KeyboardInterrupt, and nothing else awaits this task.
            handle.set_exception(contain(exc))
        else:
            outcome = RecordStatus.SUCCEEDED
            self._finish(task_id, RecordStatus.SUCCEEDED, result=value)
            handle.set_result(value)
        finally:
            if max_duration is not None:
                self._deadlines.remove(handle, max_duration)
            if observers:
                observed_end(observers, "task_finished", tokens, outcome.value, error_text)

    # -- recording ----------------------------------------------------------

    def record_cancelled(self, task_id: int, error: str) -> None:
        """Record a task cancelled through its handle."""
        self._finish(task_id, RecordStatus.CANCELLED, error=error)

    def call_on_loop(self, callback: Callable[[], None]) -> None:
        self._loop.loop.call_soon_threadsafe(callback)

    def _started(self, task_id: int) -> str:
        """Record that the task runs; its name."""
        self._registry.set_state(task_id, TaskState.RUNNING)
        with self._lock:
            record = self._records.get(task_id)
            if record is None:
                return "?"
            record["status"] = RecordStatus.RUNNING
            record["started_at"] = time.time()
            snapshot = dict(record)
        self._store().put(snapshot)
        return str(snapshot["name"])

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
