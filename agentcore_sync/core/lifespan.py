"""The app's lifespan: code run once per process before serving, and again on stopping.

The official SDK takes Starlette's ``lifespan``: a callable given the app that
returns an async context manager (an ``@asynccontextmanager`` function). Here
it may also return a plain context manager (a ``@contextmanager`` function),
or be a context manager itself. Whoever serves the runtime enters it before
the first request (``app.run()``, ``agentcore-sync serve``, each gunicorn
worker of the shipped settings; any other server on its first request) and
the runtime's shutdown exits it, after background tasks had their grace
period, since they may still use what it opened.

An async lifespan runs as one task on the runtime's event loop, from entry
to exit, so that what it opens there (connection pools, task groups) lives on
the loop that runs coroutine handlers, and is exited in the task that entered it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from .loop import LoopThread

logger = logging.getLogger("agentcore_sync.lifespan")


class LifespanFailed(RuntimeError):
    """The lifespan raised on entry: the server must not serve."""


class Phase(enum.Enum):
    WAITING = "waiting"  # not entered yet
    ENTERED = "entered"
    FAILED = "failed"  # raised on entry; never entered again
    EXITED = "exited"


def check_lifespan(lifespan: Any) -> None:
    """Refuse, at construction, what cannot be a lifespan."""
    if callable(lifespan) or _is_context_manager(lifespan):
        return
    raise TypeError(
        f"lifespan must be a callable taking the app and returning a context manager "
        f"(an @asynccontextmanager or @contextmanager function), or a context manager; "
        f"got {type(lifespan).__name__}"
    )


class Lifespan:
    """One lifespan of one runtime: entered once, exited once."""

    def __init__(self, factory: Any, app: Any, loop: LoopThread) -> None:
        check_lifespan(factory)
        # Starlette's deprecated forms, generator functions, work there too.
        if inspect.isasyncgenfunction(factory):
            factory = contextlib.asynccontextmanager(factory)
        elif inspect.isgeneratorfunction(factory):
            factory = contextlib.contextmanager(factory)
        self._factory = factory
        #: What the lifespan is given: the app the user made (set by the web app).
        self.app = app
        self._loop = loop
        # _lock guards phase, _exit and error. Invariants: phase moves WAITING ->
        # ENTERED -> EXITED, or WAITING -> FAILED (error set), or WAITING ->
        # EXITED when stopped before entry; _exit is set exactly while ENTERED.
        # Held through entry, so that requests arriving meanwhile wait for it.
        self._lock = threading.Lock()
        self.phase = Phase.WAITING
        self.error: LifespanFailed | None = None
        self._exit: Callable[[], None] | None = None

    @property
    def entered(self) -> bool:
        """Whether serving may go on (read without the lock: a hint that enter() settles)."""
        return self.phase is Phase.ENTERED

    def enter(self) -> None:
        """Enter the lifespan, once; raises ``LifespanFailed`` if it raised (now or before)."""
        with self._lock:
            if self.phase is Phase.WAITING:
                try:
                    self._exit = self._enter()
                except BaseException as exc:
                    self.phase = Phase.FAILED
                    self.error = LifespanFailed(
                        f"The app's lifespan failed on entry: {type(exc).__name__}: {exc}"
                    )
                    self.error.__cause__ = exc
                    logger.error("The app's lifespan failed on entry; not serving", exc_info=exc)
                else:
                    self.phase = Phase.ENTERED
                    logger.info("Lifespan entered")
            if self.error is not None:
                raise self.error

    def exit(self) -> None:
        """Exit the lifespan if it was entered; its errors are logged, not raised."""
        with self._lock:
            exit_, self._exit = self._exit, None
            if self.phase is not Phase.FAILED:
                self.phase = Phase.EXITED
            if exit_ is None:
                return
            try:
                exit_()
            except BaseException:
                logger.exception("The app's lifespan failed on exit")
            else:
                logger.info("Lifespan exited")

    def _enter(self) -> Callable[[], None]:
        """Enter; returns what exits it."""
        manager = self._factory if _is_context_manager(self._factory) else self._factory(self.app)
        if hasattr(manager, "__aenter__"):
            return self._enter_async(manager)
        if hasattr(manager, "__enter__"):
            manager.__enter__()
            return lambda: manager.__exit__(None, None, None)
        raise TypeError(
            f"lifespan(app) returned {type(manager).__name__}, not a context manager "
            f"(decorate the function with @contextlib.asynccontextmanager)"
        )

    def _enter_async(self, manager: Any) -> Callable[[], None]:
        entered: concurrent.futures.Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = (
            concurrent.futures.Future()
        )

        async def hold() -> None:
            stop = asyncio.Event()
            async with manager:
                entered.set_result((asyncio.get_running_loop(), stop))
                await stop.wait()

        done = self._loop.submit(hold())
        concurrent.futures.wait((entered, done), return_when=concurrent.futures.FIRST_COMPLETED)
        if not entered.done():
            done.result()  # raises what entry raised
            raise RuntimeError("the lifespan ended on entry")  # it returned without yielding
        loop, stop = entered.result()

        def exit_() -> None:
            loop.call_soon_threadsafe(stop.set)
            done.result()

        return exit_


def _is_context_manager(value: Any) -> bool:
    """Whether ``value`` is a context manager itself (some are callable as decorators
    too), rather than a class or function that makes one."""
    return not isinstance(value, type) and (
        hasattr(value, "__aenter__") or hasattr(value, "__enter__")
    )
