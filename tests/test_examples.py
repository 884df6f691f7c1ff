"""The examples of SPEC §7 do what their docstrings say."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_ping_reports_busy_while_throttled():
    app = load("custom_ping").app
    client = app.test_client()
    assert client.get("/ping").json["status"] == "Healthy"
    assert client.post("/invocations", json={"action": "throttle", "on": True}).json == {
        "ping_status": "HealthyBusy"
    }
    assert client.get("/ping").json["status"] == "HealthyBusy"
    client.post("/invocations", json={"action": "throttle", "on": False})
    assert client.get("/ping").json["status"] == "Healthy"


def test_streaming_sends_one_event_per_item_and_ends_its_task():
    app = load("streaming").app
    reply = app.test_client().post("/invocations", json={"words": 3, "delay": 0})
    assert reply.mimetype == "text/event-stream"
    events = [json.loads(line[6:]) for line in reply.get_data(as_text=True).split("\n\n") if line]
    assert [event["index"] for event in events] == [0, 1, 2]
    assert app.get_async_task_info()["active_count"] == 0


def test_mounted_agent_serves_beside_the_apps_own_routes():
    example = load("mounted")
    client = example.flask_app.test_client()
    assert client.get("/").json["agent"] == "/agent/invocations"
    assert client.get("/agent/ping").json["status"] == "Healthy"
    reply = client.post(
        "/agent/invocations",
        json={"name": "Ada"},
        headers={"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "session-7"},
    )
    assert reply.json == {"greeting": "Hello, Ada", "session": "session-7"}


def test_start_and_poll_returns_an_id_then_the_stored_result():
    import time

    app = load("start_and_poll").app
    client = app.test_client()
    started = client.post("/invocations", json={"action": "start", "seconds": 0.2}).json
    task_id = started["task_id"]
    assert client.post("/invocations", json={"action": "result", "task_id": task_id}).json[
        "status"
    ] in ("still running", "succeeded")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = client.post("/invocations", json={"action": "result", "task_id": task_id}).json
        if record.get("status") == "succeeded":
            break
        time.sleep(0.05)
    assert record["result"] == "Task completed after 0.2s"


def test_manual_tasks_record_the_ping_status_after_completion():
    import time

    example = load("manual_tasks")
    client = example.app.test_client()
    client.post("/invocations", json={"action": "start", "seconds": 0.1})
    time.sleep(0.5)
    events = client.post("/invocations", json={"action": "events"}).json["events"]
    assert [event["status"] for event in events] == ["STARTED", "COMPLETED"]
    assert events[0]["ping_status"] == "HealthyBusy"
    assert events[1]["ping_status"] == "Healthy"
