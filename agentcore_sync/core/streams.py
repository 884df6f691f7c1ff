"""The SSE body of a streaming invocation, as a WSGI response iterable.

Items are pulled inside the request's context (for log lines and ids), one
at a time as the server asks for them, so a slow reader slows the producer.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .serialization import sse_event

if TYPE_CHECKING:
    from .admission import InvocationLimiter

logger = logging.getLogger("agentcore_sync.invocations")


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

    def hold_slot(self, limiter: InvocationLimiter) -> None:
        """Keep an invocation slot of ``limiter`` until the stream is closed."""
        self._limiter = limiter

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        try:
            item = self._context.run(next, self._items)
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

    def close(self) -> None:
        limiter, self._limiter = self._limiter, None
        self._done = True
        try:
            close = getattr(self._items, "close", None)
            if close is not None:
                self._context.run(close)
        except Exception:
            self._context.run(logger.exception, "Closing the response stream failed")
        finally:
            if limiter is not None:
                limiter.release()

    def __del__(self) -> None:
        # A server that never calls close() must still give the slot back. A
        # finalizer may run while this thread holds the limiter's lock, so the
        # release is handed over rather than taken here.
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release_soon()
