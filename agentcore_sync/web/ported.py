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

import asyncio
import contextvars
import logging
import sys
from collections.abc import AsyncIterator, Generator, Iterator
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


class UnsendableResponse(Exception):
    """A Starlette response that failed before it sent anything."""


def is_starlette_response(value: Any) -> bool:
    module = sys.modules.get("starlette.responses")
    return module is not None and isinstance(value, module.Response)


def is_starlette_http_exception(exc: BaseException) -> bool:
    module = sys.modules.get("starlette.exceptions")
    return module is not None and isinstance(exc, module.HTTPException)


def streams(response: Any) -> bool:
    """Whether a Starlette response sends its body as it is produced: any
    kind but the plain ``Response`` (whose body is made with it)."""
    return type(response).__call__ is not sys.modules["starlette.responses"].Response.__call__


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

    A response with a body is sent from its attributes; a ``StreamingResponse``'s
    body (an async iterator: Starlette wraps a sync one itself) is pulled through
    the runtime's loop one chunk at a time, in the context of the request, as an
    async generator handler's items are. Any other kind (a ``FileResponse``, a
    subclass with its own ``__call__``) is run as the ASGI application it is, on
    the loop, and sends what it sends. A ``background`` task runs on the loop
    once the body is sent.
    """
    context = contextvars.copy_context()
    streaming = sys.modules["starlette.responses"].StreamingResponse
    call = type(response).__call__
    background = getattr(response, "background", None)
    if call is streaming.__call__:
        converted = PortedResponse(
            _chunks(loop.iterate(response.body_iterator, context), response.charset),
            status=response.status_code,
            headers=_headers(response),
        )
    elif call is sys.modules["starlette.responses"].Response.__call__:
        converted = _with_body(response)
    else:
        converted = _run_asgi(response, loop, context)
        background = None  # the application runs its own
    if background is not None:
        converted.call_on_close(lambda: _run_background(background, loop, context))
    return converted


# -- any other response: run as an ASGI application ------------------------------

#: The scope of ``POST /invocations`` as a response sees it: no request headers
#: (a range or a conditional request does not apply to a POST).
_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/invocations",
    "raw_path": b"/invocations",
    "query_string": b"",
    "root_path": "",
    "headers": [],
}

#: Applications still running after their body was sent (their background
#: task): the loop only keeps weak references to its tasks. Loop thread only.
_finishing: set[asyncio.Task[None]] = set()


def _run_asgi(response: Any, loop: LoopThread, context: contextvars.Context) -> PortedResponse:
    messages = loop.iterate(_messages(response), context)
    try:
        start = next(messages)
    except Exception as exc:
        messages.close()
        raise UnsendableResponse(
            f"The Starlette {type(response).__name__} failed before sending: {exc}"
        ) from exc
    headers = [
        (bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in start["headers"]
    ]
    return PortedResponse(_bodies(messages), status=start["status"], headers=headers)


async def _messages(response: Any) -> AsyncIterator[dict[str, Any]]:
    """What ``response`` sends, one message at a time: it waits for each to be taken."""
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
    task = asyncio.ensure_future(response(dict(_SCOPE), _no_disconnect, sent.put))
    finished = False
    try:
        while True:
            taken = asyncio.ensure_future(sent.get())
            await asyncio.wait((taken, task), return_when=asyncio.FIRST_COMPLETED)
            if not taken.done():
                taken.cancel()
                task.result()  # its error, if it failed
                return
            message = taken.result()
            finished = message["type"] == "http.response.body" and not message.get("more_body")
            yield message
            if finished:
                return
    finally:
        if finished and not task.done():
            _finishing.add(task)
            task.add_done_callback(_finishing.discard)
            task.add_done_callback(_log_failure)
        else:
            task.cancel()


async def _no_disconnect() -> dict[str, Any]:
    # The client's leaving is seen as the server closing the body, not here.
    await asyncio.Event().wait()  # never set
    return {"type": "http.disconnect"}


def _bodies(messages: Generator[dict[str, Any], None, None]) -> Iterator[bytes]:
    try:
        for message in messages:
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body:
                    yield bytes(body)
                if not message.get("more_body"):
                    return
    finally:
        messages.close()


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
    # Starlette encodes text chunks with the response's charset; an empty one is
    # not written (to a chunked body it would read as the end). Closed by the
    # server (the client left, or the body ended): the source is closed on the loop.
    try:
        for chunk in items:
            if chunk:
                yield chunk.encode(charset) if isinstance(chunk, str) else bytes(chunk)
    finally:
        items.close()


def _run_background(background: Any, loop: LoopThread, context: contextvars.Context) -> None:
    loop.submit(background(), context).add_done_callback(_log_failure)


def _log_failure(future: Any) -> None:
    """Log the error of what a response runs after its body (its background task)."""
    if not future.cancelled() and future.exception() is not None:
        logger.error("A Starlette response failed after its body", exc_info=future.exception())
