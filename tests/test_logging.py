"""JSON log lines that carry requestId and sessionId (SPEC §3, §6)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentcore_sync import BedrockAgentCoreApp
from agentcore_sync.observability.logging import JSONFormatter

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_ID = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
IDS = {SESSION: "sess-42", REQUEST_ID: "req-42"}


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Root logging through the runtime's JSON formatter, formatted as records are emitted."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def lines_with(lines: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [line for line in lines if text in line["message"]]


def new_app() -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(configure_logging=False)


def test_line_fields_inside_and_outside_a_request(json_lines: Any) -> None:
    app = new_app()
    user = logging.getLogger("my_agent")

    @app.entrypoint
    def handler(payload):
        user.info("inside the handler")
        return {}

    user.warning("before any request")
    app.test_client().post("/invocations", json={}, headers=IDS)
    user.info("after the request")
    lines = json_lines()

    (inside,) = lines_with(lines, "inside the handler")
    assert inside["requestId"] == "req-42" and inside["sessionId"] == "sess-42"
    assert inside["level"] == "INFO"
    assert inside["logger"] == "my_agent"
    assert TIMESTAMP.match(inside["timestamp"]), inside["timestamp"]
    for text in ("before any request", "after the request"):
        (outside,) = lines_with(lines, text)
        assert "requestId" not in outside and "sessionId" not in outside
    assert lines_with(lines, "before any request")[0]["level"] == "WARNING"


def test_generated_request_id_is_logged(json_lines: Any) -> None:
    app = new_app()

    @app.entrypoint
    def handler(payload, context):
        logging.getLogger("my_agent").info("generated id")
        return {"request_id": context.request_id}

    reply = app.test_client().post("/invocations", json={})
    (line,) = lines_with(json_lines(), "generated id")
    assert line["requestId"] == reply.json["request_id"]
    assert "sessionId" not in line


def test_ids_follow_coroutines_created_tasks_and_background_threads(json_lines: Any) -> None:
    app = new_app()
    log = logging.getLogger("my_agent")
    done = threading.Event()

    async def later():
        await asyncio.sleep(0.05)
        log.info("from a created task")
        done.set()

    @app.async_task
    def in_thread():
        log.info("from a background thread")

    @app.entrypoint
    async def handler(payload):
        log.info("from the coroutine handler")
        asyncio.create_task(later())  # noqa: RUF006 - the official SDK's pattern
        in_thread.start().result(5)
        return {}

    app.test_client().post("/invocations", json={}, headers=IDS)
    assert done.wait(5)
    lines = json_lines()
    for text in ("from the coroutine handler", "from a created task", "from a background thread"):
        (line,) = lines_with(lines, text)
        assert (line.get("requestId"), line.get("sessionId")) == ("req-42", "sess-42"), text


def test_streamed_items_log_with_the_request_ids(json_lines: Any) -> None:
    app = new_app()

    @app.entrypoint
    def handler(payload):
        for i in range(2):
            logging.getLogger("my_agent").info("streaming item %d", i)
            yield {"i": i}

    app.test_client().post("/invocations", json={}, headers=IDS).get_data()
    lines = json_lines()
    for i in range(2):
        (line,) = lines_with(lines, f"streaming item {i}")
        assert (line.get("requestId"), line.get("sessionId")) == ("req-42", "sess-42")


def test_handler_error_logs_the_traceback_with_the_ids(json_lines: Any) -> None:
    app = new_app()

    @app.entrypoint
    def handler(payload):
        raise ValueError("broken handler")

    reply = app.test_client().post("/invocations", json={}, headers=IDS)
    assert reply.status_code == 500 and b"Traceback" not in reply.data
    failures = [line for line in json_lines() if "stackTrace" in line]
    assert failures, "the handler's traceback is logged"
    failure = failures[0]
    assert failure["level"] == "ERROR"
    assert failure["requestId"] == "req-42" and failure["sessionId"] == "sess-42"
    assert "broken handler" in "".join(failure["stackTrace"])


def _record_with_exception() -> logging.LogRecord:
    try:
        raise KeyError("missing")
    except KeyError:
        return logging.getLogger("my_agent").makeRecord(
            "my_agent", logging.ERROR, "/srv/agent.py", 12, "lookup failed", (), sys.exc_info(),
            func="lookup",
        )  # fmt: skip


@pytest.mark.unit
def test_an_exception_adds_the_sdks_error_fields() -> None:
    line = json.loads(JSONFormatter().format(_record_with_exception()))
    assert line["errorType"] == "KeyError"
    assert line["errorMessage"] == "'missing'"
    assert isinstance(line["stackTrace"], list) and line["stackTrace"][0].startswith("Traceback")
    assert line["location"] == "/srv/agent.py:lookup:12"
    plain = json.loads(JSONFormatter().format(logging.makeLogRecord({"msg": "fine"})))
    assert not {"errorType", "errorMessage", "stackTrace", "location"} & plain.keys()


@pytest.mark.unit
def test_fields_and_shapes_are_the_official_sdks() -> None:
    sdk_app = pytest.importorskip("bedrock_agentcore.runtime.app")
    record = _record_with_exception()
    ours = json.loads(JSONFormatter().format(record))
    theirs = json.loads(sdk_app.RequestContextFormatter().format(record))
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert type(ours[key]) is type(value), key
        if key != "timestamp":
            assert ours[key] == value, key
    assert TIMESTAMP.match(ours["timestamp"]) and len(ours["timestamp"]) == len(theirs["timestamp"])


def test_a_message_with_newlines_stays_one_line(json_lines: Any) -> None:
    logging.getLogger("my_agent").info("first\nsecond\r\nthird")
    (line,) = lines_with(json_lines(), "first")
    assert line["message"] == "first\nsecond\r\nthird"


def status_changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("agentcore_sync") and "HealthyBusy" in r.getMessage()
    ]


def changes_logged(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The status-change lines once there are ``count`` (they may be written by another thread)."""
    deadline = time.monotonic() + 3
    while len(status_changes(caplog)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # and no more than that
    changes = status_changes(caplog)
    assert len(changes) == count, changes
    return changes


def test_every_status_change_is_logged_once_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = new_app()
    client = app.test_client()
    caplog.set_level(logging.INFO)

    first = app.add_async_task("indexing")
    second = app.add_async_task("second")
    for _ in range(5):
        client.get("/ping")
        app.get_current_ping_status()
    changes = changes_logged(caplog, 1)
    assert "indexing" in changes[0]

    app.complete_async_task(first)
    app.complete_async_task(second)
    client.get("/ping")
    changes = changes_logged(caplog, 2)
    assert "second" in changes[1]

    app.force_ping_status("HealthyBusy")
    app.force_ping_status("HealthyBusy")
    client.get("/ping")
    changes = changes_logged(caplog, 3)
    assert "forced" in changes[2]
    app.clear_forced_ping_status()
    changes = changes_logged(caplog, 4)
    assert "forced" in changes[3]

    busy = {"value": False}
    app.ping(lambda: "HealthyBusy" if busy["value"] else "Healthy")
    busy["value"] = True
    client.get("/ping")
    client.get("/ping")
    changes = changes_logged(caplog, 5)
    assert "custom" in changes[4]


def test_default_configuration_writes_json_lines_to_stderr(tmp_path: Path) -> None:
    """A fresh process with no logging configured: JSON lines, one per record, with ids."""
    script = textwrap.dedent(
        """
        import asyncio, logging
        from agentcore_sync import BedrockAgentCoreApp

        app = BedrockAgentCoreApp()
        log = logging.getLogger("my_agent")

        @app.entrypoint
        async def handler(payload):
            log.info("handled %s", payload["n"])
            return {}

        client = app.test_client()
        client.post("/invocations", json={"n": 1}, headers={
            "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "sess-sub",
            "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id": "req-sub",
        })
        log.info("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    (handled,) = lines_with(lines, "handled 1")
    assert handled["requestId"] == "req-sub" and handled["sessionId"] == "sess-sub"
    assert handled["logger"] == "my_agent" and handled["level"] == "INFO"
    assert TIMESTAMP.match(handled["timestamp"])
    (done,) = lines_with(lines, "done")
    assert "requestId" not in done


# -- task lifecycle lines, as the official SDK writes them -------------------------

STARTED = re.compile(r"^Async task started: (?P<name>\S+) \(ID: (?P<id>-?\d+)\)$")
COMPLETED = re.compile(
    r"^Async task completed: (?P<name>\S+) \(ID: (?P<id>-?\d+), Duration: \d+\.\d\ds\)$"
)


def task_lines(lines: list[dict[str, Any]], name: str) -> list[tuple[str, dict[str, Any]]]:
    """("started" | "completed", line) for each lifecycle line of the tasks named ``name``."""
    found = []
    for line in lines:
        for kind, pattern in (("started", STARTED), ("completed", COMPLETED)):
            match = pattern.match(line["message"])
            if match and match["name"] == name:
                found.append((kind, line))
    return found


def flushed(json_lines: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    from agentcore_sync.core.tasklog import task_log

    task_log.flush()
    return json_lines()


@pytest.mark.unit
def test_every_kind_of_task_logs_its_start_and_completion(json_lines: Any) -> None:
    app = new_app()

    @app.async_task
    def decorated() -> int:
        return 1

    @app.async_task
    def started_in_background() -> int:
        return 2

    def submitted() -> int:
        return 3

    task_id = app.add_async_task("by_hand", {"file": "data.csv"})
    assert app.complete_async_task(task_id)
    decorated()
    started_in_background.start().result(timeout=10)
    app.submit(submitted).result(timeout=10)
    lines = flushed(json_lines)

    for name in ("by_hand", "decorated", "started_in_background", "submitted"):
        found = task_lines(lines, name)
        assert [kind for kind, _ in found] == ["started", "completed"], (name, lines)
        for _, line in found:
            assert line["level"] == "INFO" and line["logger"] == "agentcore_sync.tasks"
    (_, started), (_, completed) = task_lines(lines, "by_hand")
    assert STARTED.match(started["message"])["id"] == str(task_id)
    assert COMPLETED.match(completed["message"])["id"] == str(task_id)


@pytest.mark.unit
def test_a_task_added_in_a_request_logs_with_its_ids(json_lines: Any) -> None:
    app = new_app()
    added: list[int] = []

    @app.entrypoint
    def handler(payload):
        added.append(app.add_async_task("in_request"))
        return {}

    app.test_client().post("/invocations", json={}, headers=IDS)
    app.complete_async_task(added[0])
    (_, started), (_, completed) = task_lines(flushed(json_lines), "in_request")
    assert (started.get("requestId"), started.get("sessionId")) == ("req-42", "sess-42")
    assert "requestId" not in completed  # completed outside the request


@pytest.mark.unit
def test_completing_an_unknown_task_warns_as_the_sdk_does(json_lines: Any) -> None:
    app = new_app()
    assert app.complete_async_task(123456789) is False
    (line,) = lines_with(json_lines(), "123456789")
    assert line["message"] == "Attempted to complete unknown task ID: 123456789"
    assert line["level"] == "WARNING"


@pytest.mark.unit
def test_a_flood_of_tasks_is_logged_a_batch_at_a_time_with_a_count(json_lines: Any) -> None:
    from agentcore_sync.core.tasklog import MAX_NOTES

    app = new_app()
    tasks = 5 * MAX_NOTES
    for _ in range(tasks):
        app.complete_async_task(app.add_async_task("flooding"))
    lines = flushed(json_lines)
    written = len(task_lines(lines, "flooding"))
    counted = [
        int(re.search(r"(\d+) more", line["message"])[1])
        for line in lines_with(lines, "faster than logged one by one: ")
    ]
    assert written <= 2 * tasks and counted, lines[-3:]
    # The counts are a lower bound only when threads race; here one thread notes all.
    assert written + sum(counted) == 2 * tasks


@pytest.mark.unit
def test_nothing_is_noted_while_info_is_off(json_lines: Any) -> None:
    from agentcore_sync.core.tasklog import task_log

    logger = logging.getLogger("agentcore_sync.tasks")
    app = new_app()
    logger.setLevel(logging.WARNING)
    try:
        app.complete_async_task(app.add_async_task("quiet"))
        assert not task_log._notes
    finally:
        logger.setLevel(logging.NOTSET)
    assert task_lines(flushed(json_lines), "quiet") == []


@pytest.mark.unit
def test_lifecycle_lines_read_as_the_official_sdks() -> None:
    sdk_app = pytest.importorskip("bedrock_agentcore.runtime.app")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    sdk = sdk_app.BedrockAgentCoreApp()
    sdk.logger.addHandler(Keep())
    sdk.complete_async_task(sdk.add_async_task("same_name"))
    sdk.complete_async_task(42)
    theirs = [(r.levelname, r.getMessage()) for r in records]

    ours_lines = io.StringIO()
    handler = logging.StreamHandler(ours_lines)
    handler.setFormatter(logging.Formatter("%(levelname)s|%(message)s"))
    package = logging.getLogger("agentcore_sync")
    package.addHandler(handler)
    previous = package.level
    package.setLevel(logging.INFO)
    try:
        app = new_app()
        app.complete_async_task(app.add_async_task("same_name"))
        app.complete_async_task(42)
        from agentcore_sync.core.tasklog import task_log

        task_log.flush()
    finally:
        package.removeHandler(handler)
        package.setLevel(previous)
    ours = [
        tuple(line.split("|", 1))
        for line in ours_lines.getvalue().splitlines()
        if "task" in line and "Ping status" not in line
    ]

    def shape(level: str, message: str) -> tuple[str, str]:
        return level, re.sub(r"\d+\.\d\ds", "Ds", re.sub(r"ID: -?\d+", "ID: N", message))

    # The unknown id's warning is written at once, the other two shortly after.
    assert sorted(shape(*line) for line in ours) == sorted(shape(*line) for line in theirs)
    assert len(theirs) == 3
