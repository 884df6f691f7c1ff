"""The runtime's own event loop, in a background thread.

Coroutine handlers and coroutine tasks run here, on one long-lived loop, so
that work a coroutine schedules with ``asyncio.create_task`` keeps running
after the coroutine returns, and no request pays for creating a loop. WSGI
threads hand coroutines over and wait on a ``concurrent.futures.Future``
(``submit``), or hand background tasks over and go on (``start``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

logger = logging.getLogger("agentcore_sync.loop")

T = TypeVar("T")

#: Submissions turned into tasks per turn of the loop. The loop runs nothing else
#: while it creates tasks, so a burst of thousands is taken a slice at a time, with
#: the tasks just created and other ready callbacks run between slices.
START_BATCH = 256

#: A submission waiting for the loop: the coroutine, its context, and the future
#: of submit() (None for start(), which nothing waits on).
_Start = tuple[Coroutine[Any, Any, Any], contextvars.Context, concurrent.futures.Future[Any] | None]


class LoopThread:
    """An asyncio loop running forever in a daemon thread, started on first use."""

    def __init__(self, name: str = "agentcore-loop") -> None:
        self._name = name
        # _lock guards starting the loop. Invariant: _loop is None, or it is
        # running (or about to run) in _thread until the process ends: nothing
        # stops it, the thread is a daemon. A leaf: nothing else is locked under it.
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # _starts_lock guards _starts and _wakeup_pending. Invariant: while
        # _starts is non-empty, _wakeup_pending is True and a call to
        # _start_submitted is scheduled on the loop (or running).
        self._starts_lock = threading.Lock()
        self._starts: deque[_Start] = deque()
        self._wakeup_pending = False
        # The tasks of start() until they end: the loop itself only keeps weak
        # references to its tasks. Used on the loop thread only.
        self._detached: set[asyncio.Task[Any]] = set()
        self._forget_detached = self._detached.discard  # one bound method for all tasks

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._serve, args=(loop, ready), name=self._name, daemon=True
                )
                thread.start()
                ready.wait()
                self._thread = thread
                self._loop = loop
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None
    ) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` as a task on the loop; cancel the future to cancel it.

        The task runs in a copy of ``context`` (the caller's by default), so
        request ids and other context variables follow the coroutine.
        """
        ctx = (context or contextvars.copy_context()).copy()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._enqueue(coro, ctx, future)
        return future

    def start(self, coro: Coroutine[Any, Any, None], context: contextvars.Context) -> None:
        """Schedule ``coro`` as a task on the loop, in ``context`` itself, and forget it.

        Lighter than submit() (no future, no callbacks: background tasks start by
        the thousand), for a coroutine that records its own outcome: it must not
        raise, except CancelledError.
        """
        self._enqueue(coro, context, None)

    def _enqueue(
        self,
        coro: Coroutine[Any, Any, Any],
        ctx: contextvars.Context,
        future: concurrent.futures.Future[Any] | None,
    ) -> None:
        loop = self.loop
        with self._starts_lock:
            self._starts.append((coro, ctx, future))
            wake = not self._wakeup_pending
            self._wakeup_pending = True
        if wake:
            # Waking the loop is a write to its self-pipe and a thread switch:
            # one per batch of submissions, not one per coroutine.
            loop.call_soon_threadsafe(self._start_submitted)

    def _start_submitted(self) -> None:
        """On the loop: create the tasks of up to START_BATCH waiting submissions."""
        loop = asyncio.get_running_loop()
        with self._starts_lock:
            starts = [self._starts.popleft() for _ in range(min(START_BATCH, len(self._starts)))]
            more = bool(self._starts)
            self._wakeup_pending = more
        for coro, ctx, future in starts:
            if future is None:
                task = loop.create_task(coro, context=ctx)
                self._detached.add(task)
                task.add_done_callback(self._forget_detached, context=ctx)
            elif future.cancelled():
                coro.close()
            else:
                task = loop.create_task(_contained(coro), context=ctx)
                task.add_done_callback(functools.partial(_copy_outcome, future=future))
                future.add_done_callback(functools.partial(_cancel_task, loop=loop, task=task))
        if more:
            # Queued behind the first steps of the tasks just created: they, and
            # whatever else is ready, run before the next slice.
            loop.call_soon(self._start_submitted)

    def run(self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result in this thread."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "A blocking call into the runtime's event loop was made from the loop itself; "
                "await the coroutine instead"
            )
        return self.submit(coro, context).result()

    def iterate(
        self, agen: AsyncIterator[T], context: contextvars.Context | None = None
    ) -> Iterator[T]:
        """Drive an async iterator from a synchronous one, one item at a time.

        Each item is fetched on demand, so a slow reader slows the producer
        rather than filling a buffer; closing the returned generator closes the
        async one on the loop.
        """
        ctx = context or contextvars.copy_context()
        finished = False
        try:
            while True:
                try:
                    item = self.run(_next_item(agen), ctx)
                except StopAsyncIteration:
                    finished = True
                    return
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if not finished and aclose is not None:
                try:
                    self.run(aclose(), ctx)
                except Exception:
                    logger.exception("Closing an async generator failed")


class ContainedExit(Exception):
    """``SystemExit`` or ``KeyboardInterrupt`` raised by a coroutine, as an ordinary error.

    asyncio re-raises those two out of the loop itself, which would end the
    loop thread and every coroutine on it; a coroutine must not stop the server.
    """


def contain(exc: BaseException) -> BaseException:
    """``exc``, or a ContainedExit in its place if it would stop the loop."""
    if isinstance(exc, (SystemExit, KeyboardInterrupt)):
        contained = ContainedExit(f"{type(exc).__name__}: {exc}")
        contained.__cause__ = exc
        return contained
    return exc


async def _contained(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exc:
        raise contain(exc) from exc


async def _next_item(agen: AsyncIterator[T]) -> T:
    return await agen.__anext__()


def _cancel_task(
    cancelled: concurrent.futures.Future[Any],
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[Any],
) -> None:
    if cancelled.cancelled():
        loop.call_soon_threadsafe(task.cancel)


def _copy_outcome(task: asyncio.Future[Any], future: concurrent.futures.Future[Any]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
        return
    exc = task.exception()
    # The future may be cancelled by another thread between the check above
    # and here; its outcome is then already decided.
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(task.result())
    except concurrent.futures.InvalidStateError:
        pass
