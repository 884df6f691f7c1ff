"""Starlette responses and ``HTTPException`` from handlers ported from the official SDK.

The SDK serves handlers on Starlette: one may return a Starlette ``Response``
(``JSONResponse(..., status_code=404)``, a ``StreamingResponse``...) or raise
Starlette's ``HTTPException``. Here each becomes the werkzeug response that
sends what the SDK sends for it on uvicorn: the same status, the same headers
(Starlette computes them when the response is made: ``raw_headers``) and the
same body; a streaming body is sent as it is produced.

Starlette is never imported here: a handler that returns or raises one of its
objects has imported it already, so the types are looked up in
``sys.modules``, and an agent without Starlette pays one dict lookup.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Generator, Iterator
from typing import Any

from werkzeug.wrappers import Response as WerkzeugResponse

from ..core.loop import LoopThread

logger = logging.getLogger("agentcore_sync.invocations")


class PortedResponse(WerkzeugResponse):
    """A werkzeug response that sends exactly the headers it is given.

    Starlette decides Content-Type (none for a bare ``Response``) and
    Content-Length (none for a stream, a 204 or a 304); werkzeug adds neither.
    """

    default_mimetype = None
    automatically_set_content_length = False


class UnsendableResponse(TypeError):
    """A Starlette response that has no body to send on WSGI (a ``FileResponse``)."""


def is_starlette_response(value: Any) -> bool:
    module = sys.modules.get("starlette.responses")
    return module is not None and isinstance(value, module.Response)


def is_starlette_http_exception(exc: BaseException) -> bool:
    module = sys.modules.get("starlette.exceptions")
    return module is not None and isinstance(exc, module.HTTPException)


def http_exception_response(exc: Any) -> PortedResponse:
    """What the SDK answers for a raised ``HTTPException``: ``{"error": detail}``
    as a ``JSONResponse`` with its status.

    One difference, on purpose: the exception's own headers (``WWW-Authenticate``,
    ``Retry-After``...) are sent too, as Starlette's own handler and this
    runtime's werkzeug errors send them; the SDK drops them.
    """
    from starlette.responses import JSONResponse  # present: it raised ``exc``

    response = JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    converted = _with_body(response)
    for name, value in (exc.headers or {}).items():
        converted.headers.add(name, value)
    return converted


def to_werkzeug(response: Any, loop: LoopThread) -> WerkzeugResponse:
    """The werkzeug response that sends a Starlette ``response``.

    A ``StreamingResponse``'s body (an async iterator: Starlette wraps a sync
    one itself) is pulled through the runtime's loop one chunk at a time, in
    the context of the request, as an async generator handler's items are.
    Its ``background`` task runs on the loop once the body is sent.
    """
    context = contextvars.copy_context()
    body_iterator = getattr(response, "body_iterator", None)
    if body_iterator is not None:
        converted = PortedResponse(
            _chunks(loop.iterate(body_iterator, context), response.charset),
            status=response.status_code,
            headers=_headers(response),
        )
    elif hasattr(response, "body"):
        converted = _with_body(response)
    else:
        raise UnsendableResponse(
            f"A Starlette {type(response).__name__} cannot be sent on this WSGI server: "
            "return a Response with a body or a StreamingResponse (for a file, Flask's send_file)"
        )
    background = getattr(response, "background", None)
    if background is not None:
        converted.call_on_close(lambda: _run_background(background, loop, context))
    return converted


def _with_body(response: Any) -> PortedResponse:
    return PortedResponse(
        bytes(response.body), status=response.status_code, headers=_headers(response)
    )


def _headers(response: Any) -> list[tuple[str, str]]:
    # Starlette keeps header bytes as latin-1, as WSGI wants them as str.
    return [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers
    ]


def _chunks(items: Generator[Any, None, None], charset: str) -> Iterator[bytes]:
    # Starlette encodes text chunks with the response's charset. Closed by the
    # server (the client left, or the body ended): the source is closed on the loop.
    try:
        for chunk in items:
            yield chunk.encode(charset) if isinstance(chunk, str) else bytes(chunk)
    finally:
        items.close()


def _run_background(background: Any, loop: LoopThread, context: contextvars.Context) -> None:
    future = loop.submit(background(), context)
    future.add_done_callback(_log_background_failure)


def _log_background_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error(
            "The background task of a Starlette response failed", exc_info=future.exception()
        )
