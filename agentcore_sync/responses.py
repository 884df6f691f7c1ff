"""Building the HTTP responses of the contract: JSON bodies and SSE streams."""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from .serialization import encode, sse_event

logger = logging.getLogger("agentcore_sync.invocations")

JSON = "application/json"

HeaderPairs = Iterable[tuple[str, str]]


class JSONReply:
    """A JSON answer of the runtime's own, as a plain WSGI application.

    It sends what ``to_response()`` would (status line, headers in werkzeug's
    order, body) without building a ``Response``: for a small invocation on
    the fast path, that object costs more than the invocation itself.
    """

    __slots__ = ("body", "headers", "status_code")

    def __init__(self, body: bytes, status_code: int = 200, headers: HeaderPairs = ()) -> None:
        self.body = body
        self.status_code = status_code
        self.headers = headers

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = self.body
        start_response(
            _status_line(self.status_code),
            [*self.headers, ("Content-Type", JSON), ("Content-Length", str(len(body)))],
        )
        return [body]

    def to_response(self) -> Response:
        """The same answer as a Flask ``Response``, for Flask's own dispatch."""
        return Response(self.body, status=self.status_code, mimetype=JSON, headers=self.headers)


@functools.cache
def _status_line(code: int) -> str:
    # The line werkzeug writes for a numeric status.
    return f"{code} {HTTP_STATUS_CODES.get(code, 'unknown').upper()}"


def as_response(answer: Response | JSONReply) -> Response:
    """``answer`` as a ``Response``, for code that needs one (Flask's dispatch)."""
    return answer.to_response() if isinstance(answer, JSONReply) else answer


def json_reply(body: Any, status: int = 200, headers: HeaderPairs = ()) -> JSONReply:
    return JSONReply(encode(body), status, headers)


def json_error(status: int, error: str, headers: HeaderPairs = (), **extra: Any) -> JSONReply:
    return json_reply({"error": error, **extra}, status, headers)


def http_exception_response(exc: HTTPException) -> Response:
    """An ``HTTPException`` as JSON, keeping its status and its headers (Allow, Retry-After...)."""
    if exc.response is not None:
        return exc.response  # type: ignore[return-value]
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return json_error(exc.code or 500, exc.description or exc.name, headers).to_response()


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
