"""Building the HTTP responses of the contract: JSON bodies and SSE streams."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException

from .serialization import encode, sse_event

logger = logging.getLogger("agentcore_sync.invocations")

JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: Any = None) -> Response:
    return Response(encode(body), status=status, mimetype=JSON, headers=headers)


def json_error(status: int, error: str, headers: Any = None, **extra: Any) -> Response:
    return json_response({"error": error, **extra}, status, headers)


def http_exception_response(exc: HTTPException) -> Response:
    """An ``HTTPException`` as JSON, keeping its status and its headers (Allow, Retry-After...)."""
    if exc.response is not None:
        return exc.response  # type: ignore[return-value]
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return json_error(exc.code or 500, exc.description or exc.name, headers)


class EventStream:
    """A WSGI body that sends each item of ``items`` as one SSE event when produced.

    Items are pulled inside the request's context (for log lines and ids).
    ``close()`` (called by every WSGI server, including when the client went
    away) closes the source, which ends an ``@async_task`` generator's task, and
    runs ``on_close`` once.
    """

    def __init__(
        self,
        items: Iterator[Any],
        context: contextvars.Context,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._items = items
        self._context = context
        self._on_close = on_close
        self._done = False

    def release_on_close(self, release: Callable[[], None]) -> None:
        """Run ``release`` once when the server closes the stream (or it is collected)."""
        self._on_close = release

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
            # A stream's generator must not stop the server either (see _invoke).
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
        on_close, self._on_close = self._on_close, None
        self._done = True
        try:
            close = getattr(self._items, "close", None)
            if close is not None:
                self._context.run(close)
        except Exception:
            self._context.run(logger.exception, "Closing the response stream failed")
        finally:
            if on_close is not None:
                on_close()

    def __del__(self) -> None:
        # A server that never calls close() must still release what the stream holds.
        if self._on_close is not None:
            self.close()


def event_stream_response(stream: EventStream) -> Response:
    response = Response(stream, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
