"""The contract's answers as werkzeug responses: JSON bodies, SSE streams, errors.

Also what the invocation pipeline knows of werkzeug (``WERKZEUG``): which
handler return values are responses, and how its HTTP errors are answered.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Response as WerkzeugResponse

from ..core import invocation
from ..core.invocation import Outcome, OutcomeKind
from ..core.loop import LoopThread
from ..core.streams import EventStream
from . import ported

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


def json_error(status: int, error: str, headers: HeaderPairs = (), **extra: Any) -> JSONReply:
    """The contract's JSON error body, ``{"error": ..., **extra}``."""
    error_body = invocation.json_error(status, error, tuple(headers), **extra)
    return JSONReply(error_body.body, status, error_body.headers)


def http_exception_response(exc: HTTPException) -> Response:
    """An ``HTTPException`` as JSON, keeping its status and its headers (Allow, Retry-After...)."""
    if exc.response is not None:
        return exc.response  # type: ignore[return-value]
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return json_error(exc.code or 500, exc.description or exc.name, headers).to_response()


def event_stream_response(stream: EventStream) -> Response:
    """An SSE stream as a response that proxies pass through unbuffered."""
    response = Response(stream, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


#: What an invocation answers: the runtime's own JSON, or a response object
#: (a handler's own, an SSE stream, an ``HTTPException``'s).
Answer = Response | JSONReply


def answer_of(outcome: Outcome, loop: LoopThread) -> Answer:
    """The WSGI application that sends ``outcome``.

    Called in the invocation's context: a ported Starlette stream is pulled in
    it, on ``loop``, the runtime's.
    """
    if outcome.kind is OutcomeKind.JSON:
        return JSONReply(outcome.body, outcome.status, outcome.headers)
    if outcome.kind is OutcomeKind.STREAM:
        assert outcome.stream is not None
        return event_stream_response(outcome.stream)
    native = outcome.native
    if not isinstance(native, WerkzeugResponse):
        try:
            native = ported.to_werkzeug(native, loop)
        except ported.UnsendableResponse as exc:
            if outcome.slot is not None:
                outcome.slot()
            logger.exception("%s", exc)
            return json_error(500, str(exc))
    if outcome.slot is not None:
        # A streamed body keeps its invocation slot until the server closes it.
        native.call_on_close(outcome.slot)
    return native  # type: ignore[return-value]


class _Werkzeug:
    """What the invocation pipeline needs to know of werkzeug, and of the
    Starlette objects that handlers ported from the official SDK return or
    raise (``ported``: only when Starlette is already imported)."""

    def is_response(self, value: Any) -> bool:
        return isinstance(value, WerkzeugResponse) or ported.is_starlette_response(value)

    def http_error(self, exc: BaseException) -> Outcome | None:
        if isinstance(exc, HTTPException):
            native = http_exception_response(exc)
            return Outcome(OutcomeKind.NATIVE, exc.code or 500, native=native)
        if ported.is_starlette_http_exception(exc):
            native = ported.http_exception_response(exc)
            return Outcome(OutcomeKind.NATIVE, native.status_code, native=native)
        return None

    def streams(self, native: Any) -> bool:
        if isinstance(native, WerkzeugResponse):
            return native.is_streamed
        return ported.streams(native)


WERKZEUG = _Werkzeug()
