"""``POST /invocations``, top to bottom.

admission → request body → request context → debug action → handler →
response (JSON, pass-through, or SSE stream). Every failure on the way is a
JSON error with the status the contract gives it; only a handler that raises
produces a 5xx.
"""

from __future__ import annotations

import contextvars
import inspect
import io
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Request, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response as WerkzeugResponse

from .callables import Kind
from .context import InvalidHeader, RequestContext, enter_request
from .models import DEBUG_ACTION_KEY, PingStatus
from .responses import (
    EventStream,
    JSONReply,
    event_stream_response,
    http_exception_response,
    json_error,
    json_reply,
)

if TYPE_CHECKING:
    from .runtime import AgentCore

logger = logging.getLogger("agentcore_sync.invocations")

_READ_CHUNK = 64 * 1024

#: What an invocation answers: the runtime's own JSON, or a response object
#: (a handler's own, an SSE stream, an ``HTTPException``'s).
Answer = Response | JSONReply


class BadRequestBody(Exception):
    """The request body cannot be handed to the handler; carries the answer."""

    def __init__(self, answer: JSONReply) -> None:
        self.answer = answer


def invoke(runtime: AgentCore) -> Answer:
    """Serve one invocation; runs in a copy of the caller's context."""
    listeners = runtime.invocation_listeners
    if not listeners:
        return _admit(runtime)
    started = time.perf_counter()
    answer = _admit(runtime)
    for listener in listeners:
        try:
            listener(answer.status_code, time.perf_counter() - started)
        except Exception:
            logger.exception("An invocation listener failed")
    return answer


def _admit(runtime: AgentCore) -> Answer:
    """Admission control around the invocation: a slot, or 503 at once."""
    limiter = runtime._limiter
    if not limiter.try_acquire():
        logger.warning("Refused an invocation: %d invocations in flight, the limit", limiter.limit)
        return json_error(
            503,
            "Too many concurrent invocations",
            headers=(("Retry-After", str(limiter.retry_after)),),
            limit=limiter.limit,
        )
    released = False
    try:
        answer = _invoke(runtime)
        stream = getattr(answer, "response", None)
        if isinstance(stream, EventStream):
            # The stream holds its slot until the server closes it.
            stream.release_on_close(limiter.release)
            released = True
        return answer
    finally:
        if not released:
            limiter.release()


def _invoke(runtime: AgentCore) -> Answer:
    started = time.perf_counter()
    try:
        # The request itself, not Flask's proxy: handlers may hand the context to
        # threads that outlive this request's Flask context.
        context = enter_request(request._get_current_object())  # type: ignore[attr-defined]
    except InvalidHeader as exc:
        logger.warning("Refused an invocation: %s", exc)
        return json_error(400, str(exc))
    try:
        payload = read_json_body(context.request, runtime.max_body_size)
    except BadRequestBody as bad:
        return bad.answer

    if runtime.debug and isinstance(payload, dict) and DEBUG_ACTION_KEY in payload:
        return debug_action(runtime, payload[DEBUG_ACTION_KEY])

    handler = runtime._handler
    if handler is None:
        logger.error("No entrypoint defined")
        return json_error(500, "No entrypoint defined")
    try:
        result = call_handler(runtime, handler, payload, context)
        response = make_response(result)
    except HTTPException as exc:
        level = logging.ERROR if (exc.code or 500) >= 500 else logging.WARNING
        logger.log(level, "Handler raised HTTP %s: %s", exc.code, exc.description)
        return http_exception_response(exc)
    except Exception as exc:
        logger.exception("Invocation failed (%.3fs)", time.perf_counter() - started)
        return json_error(500, str(exc))
    except (SystemExit, KeyboardInterrupt) as exc:
        # A handler must not stop the server it runs in: contained like any error.
        logger.error(
            "Handler raised %s; contained, the server keeps serving",
            type(exc).__name__,
            exc_info=exc,
        )
        return json_error(500, f"{type(exc).__name__}: {exc}")
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("Invocation answered (%.3fs)", time.perf_counter() - started)
    return response


def read_json_body(req: Request, limit: int) -> Any:
    """The request body parsed as JSON, read at most ``limit`` bytes far.

    A declared length over the limit is refused before any byte is read; a
    chunked body is read until it passes the limit and no further.
    """
    body = _read_body(req, limit)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        logger.warning("Refused an invocation: body is not UTF-8 (%s)", exc.reason)
        raise BadRequestBody(json_error(400, "Invalid encoding", details=str(exc))) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers past the digit limit;
        # RecursionError, nesting deeper than the parser goes.
        details = str(exc) if not isinstance(exc, RecursionError) else "nesting too deep"
        logger.warning("Refused an invocation: invalid JSON (%s)", details)
        raise BadRequestBody(json_error(400, "Invalid JSON", details=details)) from None


def _read_body(req: Request, limit: int) -> bytes:
    declared = _content_length(req.environ)
    if declared is not None and declared > limit:
        raise BadRequestBody(_too_large(limit, declared))
    if "stream" in req.__dict__:
        # Something (a before_request hook) already opened the body: read it
        # the way werkzeug does, with the limit applied to this request.
        req.max_content_length = limit
        try:
            return req.get_data(cache=True)
        except RequestEntityTooLarge:
            raise BadRequestBody(_too_large(limit, declared)) from None
    environ = req.environ
    source = environ["wsgi.input"]
    if declared is None and not environ.get("wsgi.input_terminated"):
        return b""  # no length and no end marker: WSGI says there is no body to read
    wanted = limit + 1 if declared is None else declared
    chunks: list[bytes] = []
    size = 0
    while size < wanted:
        chunk = source.read(min(_READ_CHUNK, wanted - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise BadRequestBody(_too_large(limit, declared))
    if declared is not None and size < declared:
        logger.warning(
            "Refused an invocation: body ended after %d of its %d declared bytes", size, declared
        )
        raise BadRequestBody(
            json_error(400, "Incomplete body", details=f"{size} of {declared} bytes received")
        )
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    # Handlers may still read the body through flask.request, as in any Flask view.
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _content_length(environ: dict[str, Any]) -> int | None:
    """The declared body length; None when absent or not a non-negative integer."""
    value = environ.get("CONTENT_LENGTH")
    if not value:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _too_large(limit: int, declared: int | None) -> JSONReply:
    logger.warning(
        "Refused an invocation: body of %s bytes is over the limit of %d bytes",
        declared if declared is not None else "more than the limit",
        limit,
    )
    return json_error(413, "Request body too large", limit=limit)


def call_handler(runtime: AgentCore, handler: Any, payload: Any, context: RequestContext) -> Any:
    """Call the handler where its kind runs: coroutines on the runtime's loop."""
    args = (payload, context) if runtime._handler_takes_context else (payload,)
    kind = runtime._handler_kind
    if kind is Kind.COROUTINE:
        result = runtime._loop.run(handler(*args), contextvars.copy_context())
    else:
        result = handler(*args)
    if inspect.isasyncgen(result):
        return runtime._loop.iterate(result, contextvars.copy_context())
    return result


def make_response(result: Any) -> Answer:
    if isinstance(result, WerkzeugResponse):
        return result  # type: ignore[return-value]
    if inspect.isgenerator(result):
        # Async generators arrive here already bridged (LoopThread.iterate).
        return event_stream_response(EventStream(result, contextvars.copy_context()))
    return json_reply(result)


def debug_action(runtime: AgentCore, action: Any) -> JSONReply:
    """The official SDK's debug actions, answered only with ``debug=True``."""
    if action == "ping_status":
        status, changed_at = runtime._ping.snapshot()
        return json_reply({"status": status.value, "time_of_last_update": int(changed_at)})
    if action == "job_status":
        return json_reply(runtime.get_async_task_info())
    if action == "force_healthy":
        runtime.force_ping_status(PingStatus.HEALTHY)
        return json_reply({"forced_status": "Healthy"})
    if action == "force_busy":
        runtime.force_ping_status(PingStatus.HEALTHY_BUSY)
        return json_reply({"forced_status": "HealthyBusy"})
    if action == "clear_forced_status":
        runtime.clear_forced_ping_status()
        return json_reply({"forced_status": "Cleared"})
    logger.warning("Unknown debug action requested: %r", action)
    return json_error(400, f"Unknown action: {action}")
