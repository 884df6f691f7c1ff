"""The Flask blueprint that serves ``/ping`` and ``/invocations``.

Both rules accept every common method so that a wrong one gets the contract's
JSON 405 from here, even when the blueprint is mounted into an application
whose own error pages are HTML.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from .invocation import invoke
from .models import PingStatus
from .responses import JSON, as_response, http_exception_response, json_error

if TYPE_CHECKING:
    from .runtime import AgentCore

logger = logging.getLogger("agentcore_sync.ping")

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def make_blueprint(runtime: AgentCore, name: str = "agentcore") -> Blueprint:
    bp = Blueprint(name, __name__)

    @bp.route("/ping", methods=_METHODS)
    def ping() -> Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET, HEAD")
        return ping_response(runtime)

    @bp.route("/invocations", methods=_METHODS)
    def invocations() -> Response:
        if request.method != "POST":
            return _method_not_allowed("POST")
        # A copy, so that ids set for this request do not leak into the next
        # request served by the same thread.
        return as_response(contextvars.copy_context().run(invoke, runtime))

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return http_exception_response(exc)

    return bp


def ping_body(runtime: AgentCore) -> bytes:
    """The body of ``/ping``: never fails; a failure to compute the status answers Healthy."""
    try:
        status, changed_at = runtime._ping.snapshot()
    except Exception:
        logger.exception("Computing the ping status failed; answering Healthy")
        status, changed_at = PingStatus.HEALTHY, time.time()
    return b'{"status": "%s", "time_of_last_update": %d}' % (
        status.value.encode(),
        int(changed_at),
    )


def ping_response(runtime: AgentCore) -> Response:
    return Response(ping_body(runtime), mimetype=JSON)


def _method_not_allowed(allowed: str) -> Response:
    return json_error(405, "Method not allowed", headers=(("Allow", allowed),)).to_response()
