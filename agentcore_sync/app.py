"""``BedrockAgentCoreApp``: the runtime that is also its own Flask application."""

from __future__ import annotations

import logging
import sys
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException, InternalServerError

from .fastpath import FastPath
from .responses import http_exception_response
from .runtime import AgentCore

logger = logging.getLogger("agentcore_sync")


class BedrockAgentCoreApp(AgentCore, Flask):
    """A Flask app serving ``/ping`` and ``/invocations`` — ``gunicorn module:app`` ready.

    Everything a Flask user registers (``before_request``, error handlers, more
    routes, WSGI middleware on ``wsgi_app``) applies as usual; every error the
    app answers is JSON.
    """

    def __init__(self, debug: bool = False, import_name: str | None = None, **options: Any) -> None:
        if import_name is None:
            import_name = sys._getframe(1).f_globals.get("__name__", "agentcore_sync")
        Flask.__init__(self, import_name, static_folder=None)
        AgentCore.__init__(self, debug, **options)
        install_json_errors(self)
        self.register_blueprint(self.blueprint)
        self._fast_path = FastPath(self)

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        fast = self._fast_path.serve(environ, start_response)
        if fast is not None:
            return fast
        return Flask.wsgi_app(self, environ, start_response)

    def wsgi_app_for_serving(self) -> Any:
        return self


#: The same class under the name the project's docs use.
AgentCoreApp = BedrockAgentCoreApp


def install_json_errors(app: Flask) -> None:
    """Answer every error of ``app`` as JSON: 404, 405, and unhandled exceptions."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return http_exception_response(exc)

    @app.errorhandler(Exception)
    def unhandled(exc: Exception) -> Response:
        logger.exception("Unhandled error while serving a request")
        return http_exception_response(InternalServerError())
