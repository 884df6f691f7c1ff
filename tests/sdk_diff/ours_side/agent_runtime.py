"""agentcore_sync's side of the differential test: the same names, from
``agentcore_sync``, plus the same middleware written the WSGI way."""

import json

from agentcore_sync import (
    BedrockAgentCoreApp,
    BedrockAgentCoreContext,
    PingStatus,
    RequestContext,
)

SIDE = "ours"


def _tagged(app):
    def middleware(environ, start_response):
        if environ.get("HTTP_X_DIFF_BLOCK") == "1":
            body = json.dumps({"error": "blocked by middleware"}).encode()
            start_response(
                "403 Forbidden",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]

        def tagging(status, headers, exc_info=None):
            return start_response(status, [*headers, ("X-Diff-Middleware", "on")], exc_info)

        return app(environ, tagging)

    return middleware


#: Middleware that tags every answer and refuses a request marked to be blocked.
MIDDLEWARE = [_tagged]

__all__ = [
    "MIDDLEWARE",
    "SIDE",
    "BedrockAgentCoreApp",
    "BedrockAgentCoreContext",
    "PingStatus",
    "RequestContext",
]
