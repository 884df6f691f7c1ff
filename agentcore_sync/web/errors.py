"""Every error an agent's Flask app answers is JSON: 404, 405, unhandled exceptions."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException, InternalServerError

from .responses import http_exception_response

logger = logging.getLogger("agentcore_sync")


def install_json_errors(app: Flask) -> None:
    """Answer every error of ``app`` as JSON."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return http_exception_response(exc)

    @app.errorhandler(Exception)
    def unhandled(exc: Exception) -> Response:
        logger.exception("Unhandled error while serving a request")
        return http_exception_response(InternalServerError())
