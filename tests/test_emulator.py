"""The local AgentCore Runtime, driven by boto3's own ``bedrock-agentcore`` client.

Each test starts an ``Emulator`` on a free port of 127.0.0.1 with short timers;
its sessions are real agent processes (tests/apps/emulated_app.py) served by
``agentcore-sync serve``. The agent answers its pid and home, so which process
answered, and what it kept, is read from the answers themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from servers import APPS, free_port, wait_for

from agentcore_sync.managed import Emulator

pytestmark = pytest.mark.e2e

ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/emulated_agent-a1b2c3d4e5"


def session_id(name: str) -> str:
    return f"{name}-session-".ljust(40, "0")


def descendants(pid: int) -> set[int]:
    """Every living process under ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.fixture
def no_stray_process() -> Iterator[None]:
    """Fails the test if any process it started outlives it."""
    before = descendants(os.getpid())
    yield
    deadline = time.monotonic() + 5
    while (left := descendants(os.getpid()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.fixture
def start_emulator(monkeypatch, no_stray_process) -> Iterator:
    # The sessions keep results where an agent keeps them by default: on its local disk.
    monkeypatch.delenv("AGENTCORE_SYNC_RESULT_STORE", raising=False)
    running: list[Emulator] = []

    def start(**options) -> Emulator:
        options.setdefault("ping_interval", 0.3)
        options.setdefault("stop_grace", 2.0)
        options.setdefault("idle_timeout", 60)
        emulator = Emulator("emulated_app:app", workdir=str(APPS), **options)
        running.append(emulator.start())
        return emulator

    yield start
    for emulator in running:
        emulator.stop()


def client(emulator: Emulator, **config):
    return boto3.client(
        "bedrock-agentcore",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="any",
        aws_secret_access_key="any",
        config=Config(retries={"max_attempts": 0}, **config),
    )


def invoke(agentcore, payload: dict, session: str | None = None) -> tuple[str, dict]:
    kwargs = {"runtimeSessionId": session} if session else {}
    answer = agentcore.invoke_agent_runtime(
        agentRuntimeArn=ARN, payload=json.dumps(payload), **kwargs
    )
    assert answer["statusCode"] == 200
    assert answer["contentType"] == "application/json"
    return answer["runtimeSessionId"], json.loads(answer["response"].read())


def ended(emulator: Emulator, session: str) -> dict | None:
    for event in emulator.events:
        if event["event"] == "session_ended" and event["sessionId"] == session:
            return event
    return None


def test_one_session_id_is_one_process_and_each_call_without_one_a_new_session(start_emulator):
    emulator = start_emulator()
    agentcore = client(emulator)
    first, answer = invoke(agentcore, {}, session_id("a"))
    again, same = invoke(agentcore, {}, session_id("a"))
    other, different = invoke(agentcore, {}, session_id("b"))
    assert first == again == session_id("a") and other == session_id("b")
    assert answer["pid"] == same["pid"] != different["pid"]
    assert answer["home"] != different["home"]

    made = [invoke(agentcore, {}) for _ in range(2)]
    (id1, one), (id2, two) = made
    assert len(id1) == len(id2) == 36 and id1 != id2
    assert one["pid"] != two["pid"]
    assert {s.id for s in emulator.sessions()} == {session_id("a"), session_id("b"), id1, id2}
    started = [e for e in emulator.events if e["event"] == "session_started"]
    assert len(started) == 4
    assert all(0 < e["coldStartSeconds"] < 60 for e in started)
    assert all(s.cold_start and s.cold_start > 0 for s in emulator.sessions())


def test_idle_timeout_ends_a_healthy_session_but_not_one_whose_task_runs(start_emulator):
    emulator = start_emulator(idle_timeout=1.5, max_lifetime=600)
    agentcore = client(emulator)
    idle, idle_answer = invoke(agentcore, {}, session_id("idle"))
    busy, busy_answer = invoke(agentcore, {"hold": 4}, session_id("busy"))
    began = time.monotonic()

    event = wait_for(lambda: ended(emulator, idle), "the idle session ended", 10)
    assert event["reason"] == "idle timeout"
    assert not alive(idle_answer["pid"])
    # The idle timeout has passed for the busy one too, but its task holds it.
    time.sleep(max(0.0, 2.5 - (time.monotonic() - began)))
    assert ended(emulator, busy) is None and alive(busy_answer["pid"])
    changes = [e for e in emulator.events if e["event"] == "status_changed"]
    assert any(e["sessionId"] == busy and e["status"] == "HealthyBusy" for e in changes)

    event = wait_for(lambda: ended(emulator, busy), "the busy session ended after its task", 15)
    assert event["reason"] == "idle timeout"
    assert event["lifetimeSeconds"] >= 4 + 1.5 - 0.5
    assert not alive(busy_answer["pid"])


def test_an_invocation_resets_the_idle_timeout(start_emulator):
    emulator = start_emulator(idle_timeout=3, max_lifetime=600)
    agentcore = client(emulator)
    session = session_id("kept")
    _, first = invoke(agentcore, {}, session)
    for _ in range(4):  # longer than the idle timeout in all
        time.sleep(1.0)
        _, answer = invoke(agentcore, {}, session)
        assert answer["pid"] == first["pid"]
    wait_for(lambda: ended(emulator, session), "the session ended once left alone", 10)
    # An invocation for an ended session starts a new one, with the same id.
    again, answer = invoke(agentcore, {}, session)
    assert again == session and answer["pid"] != first["pid"]


def test_maximum_lifetime_ends_a_session_though_busy(start_emulator):
    emulator = start_emulator(idle_timeout=1, max_lifetime=3)
    agentcore = client(emulator)
    session, answer = invoke(agentcore, {"hold": 60}, session_id("long"))
    event = wait_for(lambda: ended(emulator, session), "the session reached its lifetime", 15)
    assert event["reason"] == "maximum lifetime"
    assert 2.5 <= event["lifetimeSeconds"] < 8
    assert not alive(answer["pid"])


def test_what_the_agent_wrote_to_its_home_ends_with_its_session(start_emulator):
    emulator = start_emulator()
    agentcore = client(emulator)
    session = session_id("disk")
    _, answer = invoke(agentcore, {"write": "kept here"}, session)
    note = Path(answer["home"]) / "note.txt"
    assert note.read_text() == "kept here"
    _, read = invoke(agentcore, {"read": True}, session)
    assert read["note"] == "kept here"

    agentcore.stop_runtime_session(agentRuntimeArn=ARN, runtimeSessionId=session)
    assert not note.exists() and not Path(answer["home"]).exists()
    _, fresh = invoke(agentcore, {"read": True}, session)
    assert fresh["note"] is None and fresh["pid"] != answer["pid"]


def test_stop_runtime_session_ends_it_at_once(start_emulator):
    emulator = start_emulator()
    agentcore = client(emulator)
    session, answer = invoke(agentcore, {"hold": 60}, session_id("stop"))
    reply = agentcore.stop_runtime_session(agentRuntimeArn=ARN, runtimeSessionId=session)
    assert reply["runtimeSessionId"] == session
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert not alive(answer["pid"])
    assert ended(emulator, session)["reason"] == "stopped by StopRuntimeSession"
    with pytest.raises(agentcore.exceptions.ResourceNotFoundException):
        agentcore.stop_runtime_session(agentRuntimeArn=ARN, runtimeSessionId=session)


def test_a_stream_is_read_event_by_event(start_emulator):
    emulator = start_emulator()
    agentcore = client(emulator)
    answer = agentcore.invoke_agent_runtime(
        agentRuntimeArn=ARN, payload=json.dumps({"stream": 4, "gap": 1.0})
    )
    assert answer["contentType"].startswith("text/event-stream")
    lags = []
    received = []
    # As the service's docs read a stream: line by line, in small chunks.
    for line in answer["response"].iter_lines(chunk_size=1):
        if line.startswith(b"data: "):
            event = json.loads(line[len(b"data: ") :])
            received.append(time.time())
            lags.append(received[-1] - event["at"])
    assert len(received) == 4
    # Each event arrives as the agent sends it, not all at the end of the stream.
    assert max(lags) < 0.7, lags
    assert received[-1] - received[0] > 2.0


def test_session_ids_and_operations_the_service_refuses(start_emulator):
    emulator = start_emulator()
    unchecked = client(emulator, parameter_validation=False)
    with pytest.raises(unchecked.exceptions.ValidationException) as error:
        unchecked.invoke_agent_runtime(
            agentRuntimeArn=ARN, runtimeSessionId="0123456789", payload="{}"
        )
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "runtimeSessionId" in str(error.value) and "33" in str(error.value)
    with pytest.raises(unchecked.exceptions.ValidationException):
        unchecked.stop_runtime_session(agentRuntimeArn=ARN, runtimeSessionId="x" * 257)
    assert emulator.sessions() == []

    request = urllib.request.Request(emulator.url + "/runtimes/x/unknown", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 404
    assert refused.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert "invocations" in json.loads(refused.value.read())["message"]


def test_an_agent_error_is_a_runtime_client_error_with_its_answer(start_emulator):
    emulator = start_emulator()
    agentcore = client(emulator)
    with pytest.raises(agentcore.exceptions.RuntimeClientError) as error:
        agentcore.invoke_agent_runtime(agentRuntimeArn=ARN, payload=b"not json")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "Received error (400) from runtime" in str(error.value)
    assert "Invalid JSON" in str(error.value)


def test_an_agent_that_cannot_start(monkeypatch, no_stray_process):
    monkeypatch.delenv("AGENTCORE_SYNC_RESULT_STORE", raising=False)
    with Emulator("unstartable_app:app", workdir=str(APPS), ping_interval=0.3) as emulator:
        agentcore = client(emulator)
        with pytest.raises(agentcore.exceptions.RuntimeClientError) as error:
            agentcore.invoke_agent_runtime(agentRuntimeArn=ARN, payload=b"{}")
        assert "Runtime initialization failed" in str(error.value)
        assert "a_dependency_nobody_installed" in str(error.value)
        assert emulator.sessions() == []
        kinds = [e["event"] for e in emulator.events]
        assert "session_start_failed" in kinds


def test_sessions_beyond_the_maximum_are_throttled(start_emulator):
    emulator = start_emulator(max_sessions=1)
    agentcore = client(emulator)
    invoke(agentcore, {}, session_id("one"))
    with pytest.raises(agentcore.exceptions.ThrottlingException) as error:
        invoke(agentcore, {}, session_id("two"))
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    invoke(agentcore, {}, session_id("one"))  # the held session still answers
    agentcore.stop_runtime_session(agentRuntimeArn=ARN, runtimeSessionId=session_id("one"))
    invoke(agentcore, {}, session_id("two"))


def test_a_session_that_stops_answering_ping_is_ended_as_unhealthy(start_emulator):
    emulator = start_emulator(stop_grace=0.5)
    agentcore = client(emulator)
    session, answer = invoke(agentcore, {}, session_id("frozen"))
    os.kill(answer["pid"], signal.SIGSTOP)  # alive, but answers nothing
    event = wait_for(lambda: ended(emulator, session), "the frozen session ended", 20)
    assert event["reason"].startswith("unhealthy")
    assert not alive(answer["pid"])


def test_a_session_whose_agent_exits_is_ended(start_emulator):
    emulator = start_emulator()
    agentcore = client(emulator)
    session, answer = invoke(agentcore, {}, session_id("crash"))
    os.kill(answer["pid"], signal.SIGKILL)
    event = wait_for(lambda: ended(emulator, session), "the crashed session ended", 10)
    assert "exited" in event["reason"]
    _, again = invoke(agentcore, {}, session)
    assert again["pid"] != answer["pid"]


def test_sessions_served_by_gunicorn(start_emulator):
    emulator = start_emulator(server="gunicorn")
    agentcore = client(emulator)
    session, answer = invoke(agentcore, {}, session_id("gunicorn"))
    _, again = invoke(agentcore, {}, session)
    assert again["pid"] == answer["pid"]
    (summary,) = emulator.sessions()
    assert summary.pid != answer["pid"]  # the arbiter; the worker answered
    agentcore.stop_runtime_session(agentRuntimeArn=ARN, runtimeSessionId=session)
    assert not alive(answer["pid"]) and not alive(summary.pid)


# -- the command, as a user runs it ------------------------------------------------


def test_the_emulate_command_logs_json_lines_and_ends_every_session_on_sigterm(
    tmp_path, no_stray_process
):
    port = free_port()
    env = dict(os.environ)
    env.pop("AGENTCORE_SYNC_RESULT_STORE", None)
    command = [sys.executable, "-m", "agentcore_sync", "emulate", "emulated_app:app"]
    command += ["--port", str(port), "--idle-timeout", "30", "--ping-interval", "0.3"]
    command += ["--log-dir", str(tmp_path / "logs")]
    process = subprocess.Popen(
        command, cwd=APPS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = json.loads(process.stdout.readline())
        assert first["event"] == "emulator_started" and first["url"].endswith(f":{port}")
        warning = json.loads(process.stdout.readline())
        assert warning["event"] == "short_timers" and warning["level"] == "WARNING"

        class Address:
            url = f"http://127.0.0.1:{port}"

        session, answer = invoke(client(Address), {"hold": 1})
        started = json.loads(process.stdout.readline())
        assert started["event"] == "session_started" and started["sessionId"] == session
        changed = json.loads(process.stdout.readline())
        assert changed["event"] == "status_changed" and changed["status"] == "HealthyBusy"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    (end,) = [line for line in lines if line["event"] == "session_ended"]
    assert end["reason"] == "the emulator stopped" and end["sessionId"] == session
    assert lines[-1]["event"] == "emulator_stopped"
    assert not alive(answer["pid"])
    assert any((tmp_path / "logs").glob("*.log"))


def test_the_emulate_command_refuses_a_module_it_cannot_find(tmp_path):
    command = [sys.executable, "-m", "agentcore_sync", "emulate", "no_such_agent:app"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no module named 'no_such_agent'" in result.stderr


# -- the guide's example: a result outlives its session only in a store outside it ----

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_start_and_poll(tmp_path: Path, store: str | None) -> str:
    """``emulate examples/start_and_poll.py:app`` and the boto3 client script against it."""
    port = free_port()
    env = dict(os.environ)
    env.pop("AGENTCORE_SYNC_RESULT_STORE", None)
    if store:
        env["AGENTCORE_SYNC_RESULT_STORE"] = store
    command = [sys.executable, "-m", "agentcore_sync", "emulate", "examples/start_and_poll.py:app"]
    command += ["--port", str(port), "--log-dir", str(tmp_path / f"logs-{port}")]
    emulator = subprocess.Popen(
        command,
        cwd=EXAMPLES.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert json.loads(emulator.stdout.readline())["event"] == "emulator_started"
        script = [sys.executable, str(EXAMPLES / "clients" / "start_and_poll.py")]
        script += ["--endpoint", f"http://127.0.0.1:{port}", "--seconds", "0.5"]
        result = subprocess.run(script, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.communicate(timeout=30)


def said(out: str, prefix: str) -> dict:
    (line,) = [line for line in out.splitlines() if line.startswith(prefix)]
    return json.loads(line[len(prefix) :])


def test_start_and_poll_result_is_lost_with_the_session_on_a_local_store(
    tmp_path, no_stray_process
):
    out = run_start_and_poll(tmp_path, None)
    assert said(out, "result while the session lives: ")["status"] == "succeeded"
    assert said(out, "result asked again, from a new microVM: ")["status"] == "not found"
    assert out.strip().splitlines()[-1].startswith("LOST")


def test_start_and_poll_result_survives_the_session_in_redis(
    tmp_path, redis_server, no_stray_process
):
    out = run_start_and_poll(tmp_path, redis_server.url)
    before = said(out, "result while the session lives: ")
    assert before["status"] == "succeeded"
    assert said(out, "result asked again, from a new microVM: ") == before
    assert out.strip().splitlines()[-1].startswith("KEPT")


def test_connections_beyond_the_maximum_are_refused_and_the_rest_served(start_emulator):
    emulator = start_emulator(max_connections=2)
    host, port = emulator.url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.2)  # both are taken by their threads
        with socket.create_connection((host, int(port)), timeout=10) as extra:
            answer = extra.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 429")
        assert "x-amzn-ErrorType: ThrottlingException" in answer
    finally:
        for sock in held:
            sock.close()
    # The held connections gone, a client is served again.
    wait_for(lambda: _served(emulator), "a client served after the others left", 10)


def _served(emulator: Emulator) -> bool:
    try:
        invoke(client(emulator), {}, session_id("after"))
        return True
    except (BotoCoreError, ClientError):
        return False
