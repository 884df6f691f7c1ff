"""The HTTP contract against real servers: gunicorn, waitress-serve and ``app.run()``.

Each server is a process of its own on a free port of 127.0.0.1 (tests/servers.py),
started once per module and server kind. The shared cases of
``test_http_contract.py`` run against each; on top come what only a real server
shows: concurrency (``/ping`` answers at once while an invocation works), SSE
items arriving as they are produced, and a client that goes away mid-stream.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import servers
from servers import Reply
from test_http_contract import CASES, HTTPTarget, wait_healthy, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.contract]

SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_ID = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
#: The stated bound: /ping answers within 100 ms while the agent works.
PING_WITHIN = 0.1

SERVER_KINDS = ["gunicorn", "waitress", "app.run"]


def start_server(kind: str, tmp: Path) -> servers.Server:
    if kind == "gunicorn":
        return servers.gunicorn("contract_app:app", tmp)
    if kind == "waitress":
        return servers.waitress("contract_app:app", tmp)
    return servers.run_script(servers.APPS / "contract_app.py", tmp)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    with servers.serving(start_server(request.param, tmp)) as running:
        running.kind = request.param  # type: ignore[attr-defined]
        yield running


@pytest.fixture
def target(server: servers.Server) -> HTTPTarget:
    target = HTTPTarget(server.url)
    wait_healthy(target)
    return target


# -- helpers -------------------------------------------------------------------


def timed_ping(session: requests.Session, url: str) -> tuple[str, float]:
    started = time.perf_counter()
    response = session.get(url + "/ping", timeout=5)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    return response.json()["status"], elapsed


def assert_busy(url: str, task_name: str) -> None:
    """While one task runs: /ping is HealthyBusy within 100 ms, a status invocation sees it."""
    # A fresh connection per ping, then a warm keep-alive one.
    for _ in range(3):
        with requests.Session() as fresh:
            status, elapsed = timed_ping(fresh, url)
        assert status == "HealthyBusy"
        assert elapsed < PING_WITHIN, f"/ping took {elapsed:.3f}s on a fresh connection"
    with requests.Session() as session:
        session.get(url + "/ping", timeout=5)
        for _ in range(5):
            status, elapsed = timed_ping(session, url)
            assert status == "HealthyBusy"
            assert elapsed < PING_WITHIN, f"/ping took {elapsed:.3f}s on a keep-alive connection"
            time.sleep(0.02)
        reply = session.post(url + "/invocations", json={"action": "status"}, timeout=5)
    body = reply.json()
    assert body["active_tasks"] == 1, body
    assert body["ping_status"] == "HealthyBusy"
    assert [job["name"] for job in body["running_jobs"]] == [task_name]


def ping_status(url: str) -> str:
    return requests.get(url + "/ping", timeout=5).json()["status"]


class SSEStream:
    """An SSE response read event by event, as the bytes arrive."""

    def __init__(self, url: str, payload: dict[str, Any], headers: dict[str, str] | None = None):
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=15)
        self.sent_at = time.monotonic()
        self.sent_wall = time.time()
        self.conn.request(
            "POST",
            "/invocations",
            body=json.dumps(payload),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        self.response = self.conn.getresponse()

    def next_event(self) -> tuple[Any, float, float] | None:
        """(event, seconds since the request, wall-clock arrival), or None at the end."""
        data = None
        while True:
            line = self.response.readline()
            if not line:
                return None
            if line == b"\n":
                break
            assert line.startswith(b"data: "), line
            data = line[len(b"data: ") :].rstrip(b"\n")
        assert data is not None
        return json.loads(data), time.monotonic() - self.sent_at, time.time()

    def rest(self) -> list[Any]:
        events = []
        while (event := self.next_event()) is not None:
            events.append(event[0])
        return events

    def disconnect(self) -> None:
        sock = self.conn.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.conn.close()


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- the shared contract -------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_contract(case: Callable[[Any], None], target: HTTPTarget) -> None:
    case(target)


def test_served_by_the_expected_server(server: Any, target: HTTPTarget) -> None:
    expected = "gunicorn" if server.kind == "gunicorn" else "waitress"
    assert target.invoke({"action": "server"}).json() == {"server": expected}


# -- busy while working --------------------------------------------------------


def test_plain_async_task_keeps_the_server_busy(server: Any, target: HTTPTarget) -> None:
    thread, outcome = in_background(
        lambda: HTTPTarget(server.url).invoke({"action": "process_sync", "seconds": 2})
    )
    wait_until(lambda: ping_status(server.url) == "HealthyBusy", timeout=1.5)
    assert_busy(server.url, "process_sync")
    thread.join(10)
    reply: Reply = outcome["value"]
    assert reply.status == 200
    assert reply.json() == {"result": "processed for 2.0s"}
    assert ping_status(server.url) == "Healthy"


def test_streamed_generator_task_is_busy_until_read_to_the_end(
    server: Any, target: HTTPTarget
) -> None:
    stream = SSEStream(server.url, {"action": "stream_task", "count": 4, "interval": 0.4})
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    first = stream.next_event()
    assert first is not None and first[0]["i"] == 0
    assert_busy(server.url, "stream_task")
    rest = stream.rest()
    stream.disconnect()
    assert [event["i"] for event in rest] == [1, 2, 3]
    assert ping_status(server.url) == "Healthy"


def test_streamed_generator_task_ends_when_the_client_disconnects(
    server: Any, target: HTTPTarget
) -> None:
    # 50 items 0.2 s apart: 10 s if read to the end.
    stream = SSEStream(server.url, {"action": "stream_task", "count": 50, "interval": 0.2})
    first = stream.next_event()
    assert first is not None and first[0]["i"] == 0
    assert ping_status(server.url) == "HealthyBusy"
    disconnected = time.monotonic()
    stream.disconnect()
    wait_until(lambda: ping_status(server.url) == "Healthy", timeout=4)
    assert time.monotonic() - disconnected < 4
    assert target.invoke({"action": "status"}).json()["active_tasks"] == 0


def test_sse_items_arrive_as_they_are_produced(server: Any, target: HTTPTarget) -> None:
    stream = SSEStream(server.url, {"action": "slow_stream", "count": 4, "interval": 0.5})
    events = []
    while (event := stream.next_event()) is not None:
        events.append(event)
    stream.disconnect()
    assert [item["i"] for item, _, _ in events] == [0, 1, 2, 3]
    _, first_after, first_wall = events[0]
    assert first_after < 0.4, f"first event after {first_after:.3f}s"
    last_item = events[-1][0]
    # The first event was in the client's hands before the last one was produced.
    assert first_wall < last_item["t"]
    for item, _, arrived in events:
        assert arrived >= item["t"] - 0.05


# gunicorn only: waitress itself reads (spools to a temporary file) a request's
# whole body before it calls the app, so under waitress-serve and app.run() a
# declared length is answered once the body has been sent (the shared case
# body_at_the_limit_is_accepted_and_over_it_is_413 covers that).
@pytest.mark.parametrize("server", ["gunicorn"], indirect=True)
def test_declared_length_over_the_limit_is_answered_without_the_body(
    server: Any, target: HTTPTarget
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 209715200\r\n\r\n"
        )
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split()[1] == b"413"
        headers = dict(
            line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if line
        )
        assert headers["content-type"].startswith("application/json")
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
        assert "error" in json.loads(body[:length])


# -- the flagship example on `gunicorn wsgi:app` with no flags -----------------


def gunicorn_without_flags(tmp: Path, env: dict[str, str]) -> servers.Server:
    """``gunicorn wsgi:app`` exactly, in the project root; the port comes from ``$PORT``.

    tests/servers.py always passes ``-c`` and ``--bind``; this starts gunicorn
    with no flags at all, so that only the shipped gunicorn.conf.py configures it.
    """
    port = servers.free_port()
    environment = servers._env({**env, "PORT": str(port)}, tmp)
    argv = [sys.executable, "-m", "gunicorn", "wsgi:app"]
    return servers.Server(argv, port, environment, tmp / "gunicorn-noflags.log", servers.ROOT)


def test_gunicorn_wsgi_app_with_no_flags_serves_the_flagship_example(tmp_path: Path) -> None:
    server = gunicorn_without_flags(tmp_path, {"SIMPLE_AGENT_PROCESS_SECONDS": "2"})
    with servers.serving(server):
        url = server.url
        # The shipped worker where gunicorn's version is one it is tested on; gthread elsewhere.
        from agentcore_sync.servers.gunicorn_config import worker_class

        assert f"Using worker: {worker_class}" in server.log()
        assert "gunicorn worker with main-thread ping: " in server.log()
        info = requests.post(url + "/invocations", json={}, timeout=5).json()
        assert info["available_actions"] == ["process", "cleanup", "status"]

        thread, outcome = in_background(
            lambda: requests.post(
                url + "/invocations", json={"action": "process", "data_id": "d1"}, timeout=15
            )
        )
        wait_until(lambda: ping_status(url) == "HealthyBusy", timeout=1.5)
        assert_busy(url, "process_data")
        thread.join(10)
        assert outcome["value"].json() == {"message": "Processing d1", "status": "completed"}
        assert ping_status(url) == "Healthy"
        status = requests.post(url + "/invocations", json={"action": "status"}, timeout=5).json()
        assert status["active_tasks"] == 0 and status["ping_status"] == "Healthy"


# -- app.run(): JSON log lines -------------------------------------------------


@pytest.mark.parametrize("server", ["app.run"], indirect=True)
def test_app_run_logs_json_lines_with_request_and_session_ids(
    server: Any, target: HTTPTarget
) -> None:
    marker = f"marker-{time.time_ns()}"
    reply = target.invoke(
        {"action": "log", "marker": marker}, {SESSION: "sess-log", REQUEST_ID: "req-log"}
    )
    assert reply.json() == {"request_id": "req-log"}

    def logged() -> dict[str, Any] | None:
        for line in server.log().splitlines():
            if marker in line:
                return json.loads(line)
        return None

    entry = wait_until(logged, timeout=3)
    assert entry["requestId"] == "req-log"
    assert entry["sessionId"] == "sess-log"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "contract_app"
    assert entry["message"] == f"contract log line {marker}"
    assert entry["timestamp"]
