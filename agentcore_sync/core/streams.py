"""The SSE body of a streaming invocation, as a WSGI response iterable.

Items are pulled inside the request's context (for log lines and ids), one
at a time as the server asks for them, so a slow reader slows the producer.

With a keep-alive gap, a proxy in front must not take a long silence for a
dead stream: the items are then pulled on a thread of the stream's own
(``_Pump``), still one at a time and only when the server asks for the next,
while the server's thread waits at most the gap for each and sends an SSE
comment line (which clients ignore) whenever the gap passes first.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .serialization import sse_event

if TYPE_CHECKING:
    from .admission import InvocationLimiter

logger = logging.getLogger("agentcore_sync.invocations")

#: What a stream sends after a silent gap: an SSE comment.
KEEPALIVE_COMMENT = b": keep-alive\n\n"
# What a pull of the pump gives when the items are exhausted.
_END = object()
# What a wait for the next item gives when the gap passed first.
_SILENT = object()


class EventStream:
    """Sends each item of ``items`` as one SSE event when produced.

    ``close()`` (called by every WSGI server, including when the client went
    away) closes the source, which ends an ``@async_task`` generator's task,
    and gives back the invocation slot the stream holds.
    """

    def __init__(self, items: Iterator[Any], context: contextvars.Context) -> None:
        self._items = items
        self._context = context
        self._limiter: InvocationLimiter | None = None
        self._done = False
        self._keepalive: float | None = None
        self._pump: _Pump | None = None
        # The pull the pump is doing, while the server's thread waits for it.
        self._pending: concurrent.futures.Future[Any] | None = None

    def hold_slot(self, limiter: InvocationLimiter) -> None:
        """Keep an invocation slot of ``limiter`` until the stream is closed."""
        self._limiter = limiter

    def keep_alive(self, gap: float | None) -> None:
        """Send ``KEEPALIVE_COMMENT`` after each ``gap`` seconds without an item (None: never)."""
        self._keepalive = gap

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        try:
            if self._keepalive is None:
                item = self._context.run(next, self._items)
            else:
                item = self._pull_within_gap(self._keepalive)
                if item is _SILENT:
                    return KEEPALIVE_COMMENT
        except StopIteration:
            self._done = True
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # A stream's generator must not stop the server either.
            self._done = True
            self._context.run(logger.exception, "Error while streaming the response")
            return sse_event(
                {
                    "error": str(exc),
                    "error_type": type(exc).__name__,
                    "message": "An error occurred during streaming",
                }
            )
        return sse_event(item)

    def _pull_within_gap(self, gap: float) -> Any:
        """The next item, pulled by the pump; ``_SILENT`` if ``gap`` passes first
        (the pull goes on, and the next call waits for it again)."""
        pending = self._pending
        if pending is None:
            if self._pump is None:
                self._pump = _Pump(self._items, self._context)
            pending = self._pending = self._pump.pull()
        try:
            item = pending.result(gap)
        except concurrent.futures.TimeoutError:
            return _SILENT
        self._pending = None
        if item is _END:
            raise StopIteration
        return item

    def close(self) -> None:
        limiter, self._limiter = self._limiter, None
        self._done = True
        pump, self._pump = self._pump, None
        if pump is not None:
            # The pump may be inside a pull: it closes the items after it.
            pump.stop(limiter.release if limiter is not None else None)
            return
        _close_items(self._items, self._context, limiter.release if limiter is not None else None)

    def __del__(self) -> None:
        # A server that never calls close() must still give the slot back. A
        # finalizer may run while this thread holds the limiter's lock, so the
        # release is handed over rather than taken here (the pump's own thread
        # may take it: it holds no lock).
        limiter, self._limiter = self._limiter, None
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.stop(limiter.release if limiter is not None else None)
        elif limiter is not None:
            limiter.release_soon()


class _Pump:
    """The thread that pulls a stream's items, one per request, and closes them at the end.

    It holds the items and their context, never the stream, so that a stream the
    server drops is still collected (and its finalizer stops the pump).
    """

    def __init__(self, items: Iterator[Any], context: contextvars.Context) -> None:
        self._items = items
        self._context = context
        # A pull's future, or ("stop", then) once: the last request.
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="agentcore-sse-pump", daemon=True).start()

    def pull(self) -> concurrent.futures.Future[Any]:
        """The next item (``_END`` after the last, or the error it raised), soon."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._requests.put(future)
        return future

    def stop(self, then: Callable[[], None] | None) -> None:
        """Close the items after the pull under way, then call ``then`` (a SimpleQueue
        put: safe from a finalizer)."""
        self._requests.put(("stop", then))

    def _run(self) -> None:
        while True:
            request = self._requests.get()
            if isinstance(request, tuple):
                _close_items(self._items, self._context, request[1])
                return
            try:
                item = self._context.run(next, self._items)
            except StopIteration:
                request.set_result(_END)
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                request.set_exception(exc)
            else:
                request.set_result(item)
            del request


def _close_items(
    items: Iterator[Any], context: contextvars.Context, then: Callable[[], None] | None
) -> None:
    """Close a stream's source (ending an ``@async_task`` generator's task), then ``then``."""
    try:
        close = getattr(items, "close", None)
        if close is not None:
            context.run(close)
    except Exception:
        context.run(logger.exception, "Closing the response stream failed")
    finally:
        if then is not None:
            then()
