"""The Flask blueprint that serves ``/ping`` and ``/invocations``.

Both rules accept every common method so that a wrong one gets the contract's
JSON 405 from here, even when the blueprint is mounted into an application
whose own error pages are HTML.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Request, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..core.invocation import InvocationRequest, invoke
from ..core.serialization import encode
from ..models import PingStatus
from ..servers.serving import is_loopback, note_unprepared_server
from .responses import (
    JSON,
    WERKZEUG,
    Answer,
    answer_of,
    as_response,
    http_exception_response,
    json_error,
)

if TYPE_CHECKING:
    from ..core.runtime import Runtime

logger = logging.getLogger("agentcore_sync.ping")

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

#: Where local tools read what the agent is doing (``Runtime.activity``).
ACTIVITY_PATH = "/_agentcore_sync/activity"


def make_blueprint(runtime: Runtime, name: str = "agentcore") -> Blueprint:
    bp = Blueprint(name, __name__)

    @bp.route("/ping", methods=_METHODS)
    def ping() -> Response:
        if runtime.served_by is None:
            note_unprepared_server(runtime, request.environ)
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET, HEAD")
        return Response(ping_body(runtime), mimetype=JSON)

    @bp.route("/invocations", methods=_METHODS)
    def invocations() -> Response:
        if request.method != "POST":
            return _method_not_allowed("POST")
        # The request itself, not Flask's proxy: handlers may hand the context to
        # threads that outlive this request's Flask context.
        current = request._get_current_object()  # type: ignore[attr-defined]
        return as_response(serve_invocation(runtime, current))

    @bp.get(ACTIVITY_PATH)
    def activity() -> Response:
        # Task names and counts are for the developer's own tools: answered to
        # clients on this machine only; anyone else finds no such route.
        if not is_loopback(request.remote_addr or ""):
            return json_error(404, "Not Found").to_response()
        return Response(encode(runtime.activity()), mimetype=JSON)

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return http_exception_response(exc)

    return bp


def serve_invocation(runtime: Runtime, req: Request) -> Answer:
    """One invocation of the pipeline for a werkzeug request, in a context of its own."""
    if runtime.served_by is None:
        note_unprepared_server(runtime, req.environ)
    opened = _opened_body(req) if "stream" in req.__dict__ else None
    invocation = InvocationRequest(req.environ, req, opened)
    return contextvars.copy_context().run(_serve, runtime, invocation)


def _serve(runtime: Runtime, invocation: InvocationRequest) -> Answer:
    # The answer is made in the invocation's context too: a ported Starlette
    # stream is pulled in it.
    return answer_of(invoke(runtime, invocation, WERKZEUG), runtime.loop)


def _opened_body(req: Request) -> Any:
    """A reader of a body that something (a ``before_request`` hook) already opened:
    werkzeug's own, with the runtime's limit applied to this request."""

    def read(limit: int) -> bytes | None:
        req.max_content_length = limit
        try:
            return req.get_data(cache=True)
        except RequestEntityTooLarge:
            return None

    return read


def ping_body(runtime: Runtime) -> bytes:
    """The body of ``/ping``: never fails; a failure to compute the status answers Healthy."""
    try:
        status, changed_at = runtime.ping_status.snapshot()
    except Exception:
        logger.exception("Computing the ping status failed; answering Healthy")
        status, changed_at = PingStatus.HEALTHY, time.time()
    return b'{"status": "%s", "time_of_last_update": %d}' % (
        status.value.encode(),
        int(changed_at),
    )


def _method_not_allowed(allowed: str) -> Response:
    return json_error(405, "Method not allowed", headers=(("Allow", allowed),)).to_response()
