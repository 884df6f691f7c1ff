"""OpenTelemetry: spans of invocations and background tasks, on real servers.

``tests/apps/otel_app.py`` sets the OpenTelemetry SDK up with an exporter that
writes each span to a file, which the tests read; once more under
``opentelemetry-instrument`` (the AWS distro's way), with its console exporter.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import servers
from conftest import running_in_ci

pytestmark = pytest.mark.e2e

SESSION = "tracing-session-0123456789abcdef-0123456"
PAYLOAD_MARK = "payload-content-never-in-spans"


def _require() -> None:
    try:
        import opentelemetry.instrumentation.flask
        import opentelemetry.sdk  # noqa: F401
    except ImportError as exc:
        reason = f"TRACING TESTS NOT RUN: pip install -e '.[test]' (opentelemetry): {exc}"
        if running_in_ci():
            pytest.fail(reason + "; CI=true, so this is a failure, not a skip.")
        pytest.skip(reason)


def spans_in(path: Path, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        spans = (
            [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        )
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def invoke(server: servers.Server, payload: dict[str, Any]) -> requests.Response:
    return requests.post(
        server.url + "/invocations",
        json=payload,
        headers={"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": SESSION},
        timeout=10,
    )


@pytest.fixture(params=["waitress", "gunicorn"])
def traced(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[servers.Server, Path]]:
    _require()
    spans = tmp_path / "spans.jsonl"
    env = {"OTEL_TEST_SPANS": str(spans)}
    start = servers.gunicorn if request.param == "gunicorn" else servers.waitress
    args = ("--threads", "8") if request.param == "waitress" else ()
    with servers.serving(start("otel_app:app", tmp_path, *args, env=env)) as server:
        yield server, spans


def test_an_invocation_is_a_server_span_with_the_ids_and_the_session_baggage(
    traced: tuple[servers.Server, Path],
) -> None:
    server, path = traced
    reply = invoke(server, {"action": "baggage", "secret": PAYLOAD_MARK})
    assert reply.json() == {"session": SESSION}, "session.id baggage while the handler runs"
    spans = spans_in(path, 2)
    (ours,) = [s for s in spans if s["name"] == "agentcore.invocation"]
    (user,) = [s for s in spans if s["name"] == "user span"]
    assert ours["kind"] == "SpanKind.SERVER"
    assert ours["attributes"]["session.id"] == SESSION
    assert ours["attributes"]["agentcore.request.id"]
    assert ours["attributes"]["http.response.status_code"] == 200
    assert user["parent_id"] == ours["context"]["span_id"]
    assert PAYLOAD_MARK not in path.read_text()


def test_a_failed_invocation_is_an_error_span(traced: tuple[servers.Server, Path]) -> None:
    server, path = traced
    assert invoke(server, {"action": "fail"}).status_code == 500
    (span,) = [s for s in spans_in(path, 1) if s["name"] == "agentcore.invocation"]
    assert span["status"]["status_code"] == "ERROR"
    assert span["attributes"]["http.response.status_code"] == 500


def test_a_background_task_is_a_trace_of_its_own_linked_to_its_invocation(
    traced: tuple[servers.Server, Path],
) -> None:
    server, path = traced
    task_id = invoke(server, {"action": "start", "value": PAYLOAD_MARK}).json()["task_id"]
    invoke(server, {"action": "release"})
    spans = spans_in(path, 4)
    started = next(
        s for s in spans
        if s["name"] == "agentcore.invocation" and s["start_time"] == min(
            x["start_time"] for x in spans if x["name"] == "agentcore.invocation"
        )
    )  # fmt: skip
    (task,) = [s for s in spans if s["name"] == "agentcore.task background_job"]
    (inner,) = [s for s in spans if s["name"] == "user work in the task"]
    assert task["parent_id"] is None
    assert task["context"]["trace_id"] != started["context"]["trace_id"]
    assert [link["context"]["span_id"] for link in task["links"]] == [started["context"]["span_id"]]
    assert task["attributes"]["agentcore.task.id"] == task_id
    assert task["attributes"]["agentcore.task.status"] == "succeeded"
    assert task["attributes"]["session.id"] == SESSION
    assert inner["parent_id"] == task["context"]["span_id"]
    assert PAYLOAD_MARK not in path.read_text()


def test_the_ping_status_is_a_gauge(tmp_path: Path) -> None:
    """Read in the served process (its metric reader is in memory)."""
    _require()
    env = {"OTEL_TEST_SPANS": str(tmp_path / "spans.jsonl")}
    with servers.serving(servers.waitress("otel_app:app", tmp_path, env=env)) as server:
        assert invoke(server, {"action": "ping_gauge"}).json() == {"points": [0]}
        invoke(server, {"action": "start", "value": 1})
        assert invoke(server, {"action": "ping_gauge"}).json() == {"points": [1]}
        invoke(server, {"action": "release"})


def test_beside_flask_instrumentation_one_server_span(tmp_path: Path) -> None:
    _require()
    spans_file = tmp_path / "spans.jsonl"
    env = {"OTEL_TEST_SPANS": str(spans_file), "OTEL_TEST_FLASK": "1"}
    with servers.serving(servers.gunicorn("otel_app:app", tmp_path, env=env)) as server:
        assert invoke(server, {"action": "echo"}).status_code == 200
        spans = spans_in(spans_file, 2)
    (ours,) = [s for s in spans if s["name"] == "agentcore.invocation"]
    trace_id = ours["context"]["trace_id"]
    servers_spans = [
        s for s in spans if s["kind"] == "SpanKind.SERVER" and s["context"]["trace_id"] == trace_id
    ]
    assert len(servers_spans) == 1, spans
    assert ours["kind"] == "SpanKind.INTERNAL"
    assert ours["parent_id"] == servers_spans[0]["context"]["span_id"]


def test_under_opentelemetry_instrument_gunicorn(tmp_path: Path) -> None:
    """The AWS distro's way: ``opentelemetry-instrument gunicorn wsgi:app``, its console
    exporter writing spans into the server's log."""
    _require()
    port = servers.free_port()
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    if not instrument.exists():
        pytest.fail(f"{instrument} is missing: opentelemetry-distro is in the test extra")
    argv = [
        str(instrument), "--traces_exporter", "console", "--metrics_exporter", "none",
        "--logs_exporter", "none", "--service_name", "agentcore-sync-test",
        sys.executable, "-m", "gunicorn", "-c", str(servers.ROOT / "gunicorn.conf.py"),
        "--bind", f"127.0.0.1:{port}", "otel_app:app",
    ]  # fmt: skip
    env = servers._env({"OTEL_BSP_SCHEDULE_DELAY": "100"}, tmp_path)
    server = servers.Server(argv, port, env, tmp_path / "instrumented.log", servers.ROOT)
    with servers.serving(server):
        assert invoke(server, {"action": "echo"}).status_code == 200
        deadline = time.monotonic() + 10
        while '"name": "agentcore.invocation"' not in server.log():
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.1)
    assert os.environ.get("OTEL_TEST_SPANS") is None
