"""``POST /invocations``, top to bottom, knowing no web framework.

admission → request body → request context → debug action → handler →
outcome (JSON, an SSE stream, or the handler's own response object). Every
failure on the way is a JSON outcome with the status the contract gives it;
only a handler that raises produces a 5xx. The web adapter turns the outcome
into its framework's response, and tells the pipeline what its framework's
responses and HTTP errors look like (``Framework``).
"""

from __future__ import annotations

import contextvars
import enum
import inspect
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..models import DEBUG_ACTION_KEY, PingStatus
from .admission import HeldSlot, InvocationLimiter
from .callables import Kind
from .context import InvalidHeader, RequestContext, enter_request
from .observers import finished as observed_end
from .observers import started as observed_start
from .serialization import encode
from .streams import EventStream

if TYPE_CHECKING:
    from .runtime import Handler, Runtime

logger = logging.getLogger("agentcore_sync.invocations")

_READ_CHUNK = 64 * 1024
#: A body without a declared length is kept in memory up to this size, then on
#: disk: one that runs past the limit is refused without the limit's worth of
#: memory, which the allocator would not give back.
SPOOL_SIZE = 1024 * 1024

Headers = tuple[tuple[str, str], ...]


class OutcomeKind(enum.Enum):
    JSON = "json"  # ``body`` is the JSON to send with ``status`` and ``headers``
    STREAM = "stream"  # ``stream`` is the SSE body
    NATIVE = "native"  # ``native`` is the framework's own response, passed through


@dataclass(slots=True)
class Outcome:
    """What an invocation answers, for the adapter to send."""

    kind: OutcomeKind
    status: int = 200
    body: bytes = b""
    headers: Headers = ()
    stream: EventStream | None = None
    native: Any = None
    #: For a ``native`` response that streams: its admission slot, which the
    #: adapter gives back (calls) once the response is closed.
    slot: HeldSlot | None = None


def json_outcome(value: Any, status: int = 200, headers: Headers = ()) -> Outcome:
    return Outcome(OutcomeKind.JSON, status, encode(value), headers)


def json_error(status: int, error: str, headers: Headers = (), **extra: Any) -> Outcome:
    return json_outcome({"error": error, **extra}, status, headers)


class Framework(Protocol):
    """What the pipeline needs to know of the web framework that serves it."""

    def is_response(self, value: Any) -> bool:
        """Whether a handler's return value is the framework's own response."""

    def http_error(self, exc: BaseException) -> Outcome | None:
        """The outcome of a framework HTTP error raised by a handler; None for others."""

    def streams(self, native: Any) -> bool:
        """Whether a framework response sends its body as it is produced."""


@dataclass(slots=True)
class InvocationRequest:
    """One request, as the adapter hands it over."""

    environ: dict[str, Any]
    #: The framework's request object, for ``RequestContext.request``.
    native: Any
    #: Reads the body when the framework already opened it (a hook read it):
    #: returns it, or None when it is over the given limit.
    opened_body: Callable[[int], bytes | None] | None = None


class BadRequestBody(Exception):
    """The request body cannot be handed to the handler; carries the answer."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def invoke(runtime: Runtime, request: InvocationRequest, framework: Framework) -> Outcome:
    """Serve one invocation. Callers run it in a copy of their context
    (``contextvars.copy_context().run``), so that the ids it sets for this request do
    not leak into the next one served by the same thread."""
    listeners = runtime.invocation_listeners
    if not listeners:
        return _admit(runtime, request, framework)
    started = time.perf_counter()
    outcome = _admit(runtime, request, framework)
    status = getattr(outcome.native, "status_code", outcome.status)
    for listener in listeners:
        try:
            listener(status, time.perf_counter() - started)
        except Exception:
            logger.exception("An invocation listener failed")
    return outcome


def refusal(limiter: InvocationLimiter, what: str) -> Outcome:
    """The answer to ``what`` when ``limiter`` has no slot: 503 at once, with Retry-After."""
    logger.warning("Refused %s: %d invocations in flight, the limit", what, limiter.limit)
    return json_error(
        503,
        "Too many concurrent invocations",
        headers=(("Retry-After", str(limiter.retry_after)),),
        limit=limiter.limit,
    )


def _admit(runtime: Runtime, request: InvocationRequest, framework: Framework) -> Outcome:
    """Admission control around the invocation: a slot, or 503 at once."""
    limiter = runtime.limiter
    if not limiter.try_acquire():
        return refusal(limiter, "an invocation")
    held = False
    try:
        outcome = _invoke(runtime, request, framework)
        if outcome.stream is not None:
            # The stream holds its slot until the server closes it.
            outcome.stream.hold_slot(limiter)
            outcome.stream.keep_alive(runtime.sse_keepalive)
            held = True
        elif outcome.native is not None and framework.streams(outcome.native):
            outcome.slot = HeldSlot(limiter)
            held = True
        return outcome
    finally:
        if not held:
            limiter.release()


def _invoke(runtime: Runtime, request: InvocationRequest, framework: Framework) -> Outcome:
    started = time.perf_counter()
    try:
        context = enter_request(request.environ, request.native)
    except InvalidHeader as exc:
        logger.warning("Refused an invocation: %s", exc)
        return json_error(400, str(exc))
    observers = runtime.observers
    if not observers:
        return _answer(runtime, request, framework, context, started)
    tokens = observed_start(observers, "invocation_started", context)
    outcome = _answer(runtime, request, framework, context, started)
    status = getattr(outcome.native, "status_code", outcome.status)
    observed_end(observers, "invocation_finished", tokens, status)
    return outcome


def _answer(
    runtime: Runtime,
    request: InvocationRequest,
    framework: Framework,
    context: RequestContext,
    started: float,
) -> Outcome:
    try:
        payload = read_json_body(request, runtime.max_body_size)
    except BadRequestBody as bad:
        return bad.outcome

    if runtime.debug and isinstance(payload, dict) and DEBUG_ACTION_KEY in payload:
        return debug_action(runtime, payload[DEBUG_ACTION_KEY])

    handler = runtime.handler
    if handler is None:
        logger.error("No entrypoint defined")
        return json_error(500, "No entrypoint defined")
    try:
        return _outcome_of(call_handler(runtime, handler, payload, context), framework)
    except Exception as exc:
        http_error = framework.http_error(exc)
        if http_error is not None:
            level = logging.ERROR if http_error.status >= 500 else logging.WARNING
            logger.log(level, "Handler raised HTTP %s: %s", http_error.status, exc)
            return http_error
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
    finally:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Invocation answered (%.3fs)", time.perf_counter() - started)


def _outcome_of(result: Any, framework: Framework) -> Outcome:
    if framework.is_response(result):
        return Outcome(OutcomeKind.NATIVE, native=result)
    if inspect.isgenerator(result):
        # Async generators arrive here already bridged (LoopThread.iterate).
        stream = EventStream(result, contextvars.copy_context())
        return Outcome(OutcomeKind.STREAM, stream=stream)
    return json_outcome(result)


# -- the request body ------------------------------------------------------------


def read_json_body(request: InvocationRequest, limit: int) -> Any:
    """The request body parsed as JSON, read at most ``limit`` bytes far.

    A declared length over the limit is refused before any byte is read; a
    body without one is read until it passes the limit and no further.
    """
    body = _read_body(request, limit)
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


def _read_body(request: InvocationRequest, limit: int) -> bytes:
    environ = request.environ
    declared = _content_length(environ)
    if declared is not None and declared > limit:
        logger.warning(
            "Refused an invocation: declared body of %d bytes is over the limit of %d bytes",
            declared,
            limit,
        )
        raise BadRequestBody(_too_large(limit))
    if request.opened_body is not None:
        body = request.opened_body(limit)
        if body is None:
            logger.warning("Refused an invocation: body is over the limit of %d bytes", limit)
            raise BadRequestBody(_too_large(limit))
        return body
    if declared is None and not environ.get("wsgi.input_terminated"):
        return b""  # no length and no end marker: WSGI says there is no body to read
    source = environ["wsgi.input"]
    body = _read_declared(source, declared) if declared is not None else _read_open(source, limit)
    # Handlers may still read the body through their framework's request object.
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _read_declared(source: Any, declared: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < declared:
        chunk = source.read(min(_READ_CHUNK, declared - size))
        if not chunk:
            logger.warning(
                "Refused an invocation: body ended after %d of its %d declared bytes",
                size,
                declared,
            )
            raise BadRequestBody(
                json_error(400, "Incomplete body", details=f"{size} of {declared} bytes received")
            )
        chunks.append(chunk)
        size += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_open(source: Any, limit: int) -> bytes:
    """A body of no declared length (chunked): spooled to disk past ``SPOOL_SIZE``."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE) as spool:
        size = 0
        while True:
            chunk = source.read(min(_READ_CHUNK, limit + 1 - size))
            if not chunk:
                break
            spool.write(chunk)
            size += len(chunk)
            if size > limit:
                logger.warning(
                    "Refused an invocation: body without a declared length ran past "
                    "the limit of %d bytes; stopped reading there",
                    limit,
                )
                raise BadRequestBody(_too_large(limit))
        spool.seek(0)
        return spool.read()


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


def _too_large(limit: int) -> Outcome:
    return json_error(413, "Request body too large", limit=limit)


# -- the handler -------------------------------------------------------------------


def call_handler(runtime: Runtime, handler: Handler, payload: Any, context: RequestContext) -> Any:
    """Call the handler where its kind runs: coroutines on the runtime's loop."""
    args = (payload, context) if handler.takes_context else (payload,)
    if handler.kind is Kind.COROUTINE:
        result = runtime.loop.run(handler.func(*args), contextvars.copy_context())
    else:
        result = handler.func(*args)
    if inspect.isasyncgen(result):
        return runtime.loop.iterate(result, contextvars.copy_context())
    return result


def debug_action(runtime: Runtime, action: Any) -> Outcome:
    """The official SDK's debug actions, answered only with ``debug=True``."""
    if action == "ping_status":
        status, changed_at = runtime.ping_status.snapshot()
        return json_outcome({"status": status.value, "time_of_last_update": int(changed_at)})
    if action == "job_status":
        return json_outcome(runtime.get_async_task_info())
    if action == "force_healthy":
        runtime.force_ping_status(PingStatus.HEALTHY)
        return json_outcome({"forced_status": "Healthy"})
    if action == "force_busy":
        runtime.force_ping_status(PingStatus.HEALTHY_BUSY)
        return json_outcome({"forced_status": "HealthyBusy"})
    if action == "clear_forced_status":
        runtime.clear_forced_ping_status()
        return json_outcome({"forced_status": "Cleared"})
    logger.warning("Unknown debug action requested: %r", action)
    return json_error(400, f"Unknown action: {action}")
