"""The official SDK's side of the differential test: what an SDK user imports,
plus the middleware written the SDK's way (Starlette middleware)."""

from bedrock_agentcore.runtime import BedrockAgentCoreApp, PingStatus, RequestContext
from bedrock_agentcore.runtime.context import BedrockAgentCoreContext
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

SIDE = "sdk"


class _Tagged(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        if request.headers.get("x-diff-block") == "1":
            return JSONResponse({"error": "blocked by middleware"}, status_code=403)
        response = await call_next(request)
        response.headers["X-Diff-Middleware"] = "on"
        return response


#: Middleware that tags every answer and refuses a request marked to be blocked.
MIDDLEWARE = [Middleware(_Tagged)]

__all__ = [
    "MIDDLEWARE",
    "SIDE",
    "BedrockAgentCoreApp",
    "BedrockAgentCoreContext",
    "PingStatus",
    "RequestContext",
]
