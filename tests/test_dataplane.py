"""The emulator's pieces that do no I/O: the data plane's requests and errors, and the
live view's row of a session."""

from __future__ import annotations

import io
import json
from email.message import Message

import pytest

from agentcore_sync.cli.display import SessionsScreen, session_lines
from agentcore_sync.managed import SessionState, SessionSummary
from agentcore_sync.managed.dataplane import (
    ErrorType,
    Invoke,
    ServiceError,
    StopSession,
    parse,
)
from agentcore_sync.managed.lifecycle import (
    HEALTHY_BUSY,
    Probe,
    Settings,
    SimulatedSession,
    TaskGroup,
    Tasks,
)
from agentcore_sync.models import REQUEST_ID_HEADER, SESSION_HEADER

pytestmark = pytest.mark.unit

ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent-a1b2c3"
SESSION = "s" * 33


def headers(**values: str) -> Message:
    message = Message()
    for name, value in values.items():
        message[name.replace("_", "-")] = value
    return message


def test_an_invocation_names_its_runtime_and_session_and_passes_the_services_headers() -> None:
    given = headers(Content_Length="2", Content_Type="application/json", baggage="a=b")
    given[SESSION_HEADER] = SESSION
    given["X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tenant"] = "acme"
    given["X-Not-Passed"] = "no"
    operation = parse("POST", f"/runtimes/{ARN}/invocations", given)
    assert isinstance(operation, Invoke)
    assert (operation.runtime_arn, operation.session_id, operation.content_length) == (
        ARN,
        SESSION,
        2,
    )
    passed = operation.agent_headers
    assert passed["Content-Type"] == "application/json" and passed["baggage"] == "a=b"
    assert passed["X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tenant"] == "acme"
    assert "X-Not-Passed" not in passed and len(passed[REQUEST_ID_HEADER]) == 36


def test_an_invocation_without_a_session_id_leaves_it_to_the_emulator() -> None:
    operation = parse("POST", f"/runtimes/{ARN}/invocations", headers(Content_Length="0"))
    assert isinstance(operation, Invoke) and operation.session_id is None


def test_stop_runtime_session_needs_a_session_id() -> None:
    given = headers()
    given[SESSION_HEADER] = SESSION
    assert parse("POST", f"/runtimes/{ARN}/stopruntimesession", given) == StopSession(ARN, SESSION)
    with pytest.raises(ServiceError) as error:
        parse("POST", f"/runtimes/{ARN}/stopruntimesession", headers())
    assert error.value.error is ErrorType.VALIDATION


@pytest.mark.parametrize(
    ("session_id", "constraint"),
    [("x" * 10, "greater than or equal to 33"), ("x" * 257, "less than or equal to 256")],
)
def test_session_ids_outside_the_models_bounds_are_a_validation_exception(
    session_id: str, constraint: str
) -> None:
    given = headers(Content_Length="2")
    given[SESSION_HEADER] = session_id
    with pytest.raises(ServiceError) as error:
        parse("POST", f"/runtimes/{ARN}/invocations", given)
    status, answer_headers, body = error.value.answer("request-1")
    assert status == 400
    assert ("x-amzn-ErrorType", "ValidationException") in answer_headers
    assert constraint in json.loads(body)["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", f"/runtimes/{ARN}/invocations"), ("POST", "/ping"), ("POST", "/runtimes/x/y")],
)
def test_anything_else_is_an_unknown_operation(method: str, path: str) -> None:
    with pytest.raises(ServiceError) as error:
        parse(method, path, headers(Content_Length="0"))
    assert error.value.error is ErrorType.UNKNOWN_OPERATION
    assert error.value.answer("r")[0] == 404


def test_a_payload_without_a_length_or_over_the_models_limit_is_refused() -> None:
    for given in (headers(), headers(Content_Length="100000001"), headers(Content_Length="x")):
        with pytest.raises(ServiceError) as error:
            parse("POST", f"/runtimes/{ARN}/invocations", given)
        assert error.value.error is ErrorType.VALIDATION


def test_a_sessions_row_shows_its_status_timers_tasks_and_stuck() -> None:
    session = SimulatedSession(Settings(60, 600, stuck_after=5, short_ok=True))
    job = Tasks(running=1, groups=(TaskGroup("crawl", 1, 3.0),))
    session.observe(Probe(1000.0, HEALTHY_BUSY, 1000.0, tasks=job))
    view = session.observe(Probe(1010.0, HEALTHY_BUSY, 1000.0, tasks=job))
    summary = SessionSummary(SESSION, SessionState.RUNNING, 4242, "/tmp/h", 0.31, 1, view)
    lines = session_lines(summary)
    assert len(lines) == 4 and all(len(line) < 100 for line in lines[1:]), lines
    row = "\n".join(lines)
    for part in (
        SESSION,
        "4242",
        "HealthyBusy held 0:00:10",
        "cold start 0.31 s",
        "STUCK?",
        "held while HealthyBusy",
        "lifetime 0:09:50 left",
        "crawl x1",
        "1 invocation(s) in flight",
    ):
        assert part in row, (part, row)
    starting = SessionSummary(SESSION, SessionState.STARTING, None, None, None, 0, None)
    assert session_lines(starting) == [f"{SESSION}  pid -  starting"]

    out = io.StringIO()
    screen = SessionsScreen(out, "emulate agent:app")
    screen.event({"message": "Session started"})
    screen.draw([summary])
    assert "emulate agent:app" in out.getvalue() and "Session started" in out.getvalue()
