"""A test agent for the command line (tests/test_cli.py, tests/test_monitor.py).

``action`` selects what the handler does: ``echo`` the payload, ids and forwarded
headers; ``stream`` SSE events at an interval; ``start`` a background task that
runs for some seconds; ``hang``: a task that is never completed (a stuck
session); ``fail``; ``stream_fail``. Prometheus metrics are served at /metrics.
``flask_app`` is a Flask application with another agent mounted under /agent.
"""

from __future__ import annotations

import os
import time

from flask import Flask

from agentcore_sync import AgentCore, BedrockAgentCoreApp
from agentcore_sync.observability.metrics import enable_metrics

app = BedrockAgentCoreApp()
enable_metrics(app, "/metrics")


@app.async_task
def long_job(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return f"worked {seconds}s"


def events(count: int, interval: float):
    for i in range(count):
        if i:
            time.sleep(interval)
        yield {"i": i, "t": time.time()}


@app.entrypoint
def main(payload, context):
    action = payload.get("action", "echo")
    if action == "echo":
        return {
            "payload": payload,
            "session_id": context.session_id,
            "request_id": context.request_id,
            "headers": context.request_headers,
        }
    if action == "stream":
        return events(int(payload.get("count", 3)), float(payload.get("interval", 0.1)))
    if action == "start":
        return {"task_id": long_job.start(float(payload["seconds"])).task_id}
    if action == "hang":
        return {"task_id": app.add_async_task("forgotten_task")}
    if action == "fail":
        raise RuntimeError("failed on purpose")
    if action == "stream_fail":
        return stream_then_fail()
    if action == "pid":
        return {"pid": os.getpid()}
    raise ValueError(f"unknown action {action!r}")


def stream_then_fail():
    yield {"i": 0}
    raise RuntimeError("mid-stream")


# An agent mounted into an application of its own, under /agent (`serve cli_app:flask_app`).
mounted = AgentCore()
flask_app = Flask(__name__)
flask_app.register_blueprint(mounted.blueprint, url_prefix="/agent")


@mounted.entrypoint
def mounted_main(payload):
    return {"mounted": True, "payload": payload}
