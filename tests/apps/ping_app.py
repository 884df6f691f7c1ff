"""An agent for the tests of /ping answered on the server's I/O thread.

``GET /hold?seconds=s`` holds a server thread (a route of the app's own, which
the invocation bound does not count); ``/thread`` (GET or POST, whose body it
does not read) answers which thread served it; ``{"task": s}`` starts a background task
of ``s`` seconds; any other payload is echoed. ``PING_APP_VARIANT`` adds what
must send ``/ping`` through the app: ``custom`` (a ``@ping`` function),
``middleware`` (WSGI middleware), ``hook`` (an ``after_request`` function);
the last two mark their answers with an ``X-Marked-By`` header.
``python ping_app.py`` serves it with ``app.run()`` on ``$PORT`` with
``$PING_APP_THREADS`` threads.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from flask import request

from agentcore_sync import BedrockAgentCoreApp, PingStatus

app = BedrockAgentCoreApp()
VARIANT = os.environ.get("PING_APP_VARIANT", "plain")


@app.route("/hold")
def hold() -> dict[str, Any]:
    seconds = float(request.args.get("seconds", "2"))
    time.sleep(seconds)
    return {"held": seconds}


@app.route("/thread", methods=["GET", "POST"])
def thread() -> dict[str, Any]:
    return {"thread": threading.get_ident()}


@app.async_task
def sleeper(seconds: float) -> None:
    time.sleep(seconds)


@app.entrypoint
def invoke(payload: Any) -> Any:
    if isinstance(payload, dict) and "task" in payload:
        return {"task_id": sleeper.start(float(payload["task"])).task_id}
    return payload


if VARIANT == "custom":

    @app.ping
    def status() -> PingStatus:
        return PingStatus.HEALTHY_BUSY

elif VARIANT == "middleware":
    inner = app.wsgi_app

    def marking_middleware(environ: dict[str, Any], start_response: Any) -> Any:
        def marked(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            return start_response(status, [*headers, ("X-Marked-By", "middleware")], *exc_info)

        return inner(environ, marked)

    app.wsgi_app = marking_middleware  # type: ignore[method-assign]

elif VARIANT == "hook":

    @app.after_request
    def mark(response: Any) -> Any:
        response.headers["X-Marked-By"] = "hook"
        return response


if __name__ == "__main__":
    app.run(threads=int(os.environ.get("PING_APP_THREADS", "4")))
