"""A test agent that exercises every part of the HTTP contract (SPEC §3).

The payload's ``action`` selects what the handler does; a payload that is not
an object is echoed back. Served in-process (Flask test client), by gunicorn
(``contract_app:app``), by waitress-serve, and by ``python contract_app.py``
(``app.run()`` on ``$PORT``).

``CONTRACT_MAX_BODY_SIZE`` sets the body limit (1 MiB by default, so that tests
can go past it cheaply).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from typing import Any

import pydantic
from flask import Response, abort, request
from werkzeug.exceptions import Conflict
from werkzeug.wrappers import Response as WerkzeugResponse

from agentcore_sync import BedrockAgentCoreApp, RequestContext
from agentcore_sync.core.context import BedrockAgentCoreContext

MAX_BODY_SIZE = int(os.environ.get("CONTRACT_MAX_BODY_SIZE", str(1 << 20)))

app = BedrockAgentCoreApp(max_body_size=MAX_BODY_SIZE)
log = logging.getLogger("contract_app")


class Model(pydantic.BaseModel):
    name: str
    count: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Plain:
    def __init__(self) -> None:
        self.kind = "plain"
        self.size = 3


@app.async_task
def process_sync(seconds: float) -> str:
    """A plain function that keeps the agent busy while it sleeps."""
    time.sleep(seconds)
    return f"processed for {seconds}s"


@app.async_task
def stream_task(count: int, interval: float):
    """A generator that keeps the agent busy while it is being streamed."""
    for i in range(count):
        if i:
            time.sleep(interval)
        yield {"i": i, "t": time.time()}


def slow_stream(count: int, interval: float):
    for i in range(count):
        if i:
            time.sleep(interval)
        yield {"i": i, "t": time.time()}


def numbers(count: int):
    for i in range(count):
        yield {"i": i}


async def async_numbers(count: int):
    for i in range(count):
        await asyncio.sleep(0)
        yield {"i": i}


def failing_stream():
    yield {"i": 0}
    yield {"i": 1}
    raise RuntimeError("mid-stream")


async def async_failing_stream():
    yield {"i": 0}
    yield {"i": 1}
    raise RuntimeError("mid-stream")


def circular() -> dict[str, Any]:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    return loop


def status() -> dict[str, Any]:
    info = app.get_async_task_info()
    return {
        "ping_status": app.get_current_ping_status().value,
        "active_tasks": info["active_count"],
        "running_jobs": info["running_jobs"],
    }


def describe_context(context: RequestContext) -> dict[str, Any]:
    return {
        "session_id": context.session_id,
        "request_id": context.request_id,
        "request_headers": context.request_headers,
        "method": context.request.method if context.request is not None else None,
        "ctx_request_id": BedrockAgentCoreContext.get_request_id(),
        "ctx_session_id": BedrockAgentCoreContext.get_session_id(),
        "workload_access_token": BedrockAgentCoreContext.get_workload_access_token(),
        "oauth2_callback_url": BedrockAgentCoreContext.get_oauth2_callback_url(),
    }


def server_name() -> str:
    environ = request.environ
    if "gunicorn.socket" in environ:
        return "gunicorn"
    if any(key.startswith("waitress.") for key in environ):
        return "waitress"
    return "other"


@app.entrypoint
def handler(payload: Any, context: RequestContext) -> Any:
    if not isinstance(payload, dict):
        return {"echo": payload}
    action = payload.get("action", "echo")
    count = int(payload.get("count", 3))
    interval = float(payload.get("interval", 0.5))
    simple = {
        "raise": lambda: _raise(ValueError(payload.get("message", "boom"))),
        "raise_json_decode": lambda: json.loads("{not json"),
        "teapot": lambda: abort(418),
        "abort404": lambda: abort(404),
        "conflict": lambda: _raise(Conflict("already there")),
        "response": lambda: Response(
            "created", status=201, mimetype="text/plain", headers={"X-Custom": "yes"}
        ),
        "werkzeug_response": lambda: WerkzeugResponse(
            b"\x00\x01raw", status=202, mimetype="application/octet-stream"
        ),
        "gen": lambda: numbers(count),
        "agen": lambda: async_numbers(count),
        "gen_error": failing_stream,
        "agen_error": async_failing_stream,
        "slow_stream": lambda: slow_stream(count, interval),
        "pydantic": lambda: Model(name="m", count=2),
        "dataclass": lambda: Point(1, 2),
        "object": Plain,
        "set": lambda: {1, 2, 3},
        "circular": circular,
        "sleep": lambda: (time.sleep(float(payload.get("seconds", 1))), {"slept": True})[1],
        "process_sync": lambda: {"result": process_sync(float(payload.get("seconds", 2)))},
        "stream_task": lambda: stream_task(count, interval),
        "status": status,
        "context": lambda: describe_context(context),
        "server": lambda: {"server": server_name()},
    }
    if action == "echo":
        return {"echo": payload}
    if action == "log":
        log.info("contract log line %s", payload.get("marker"))
        return {"request_id": context.request_id}
    if action in simple:
        return simple[action]()
    return {"error": f"unknown action {action!r}"}


def _raise(exc: BaseException) -> Any:
    raise exc


if __name__ == "__main__":
    app.run()
