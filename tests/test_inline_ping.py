"""Plain pings answered on the server's I/O thread (inline_ping, gunicorn_worker, serving).

Real servers — gunicorn with the shipped config and ``app.run()`` on waitress —
spoken to over raw sockets, so that what is on the wire (pipelining, split
requests, ``Connection: close``) is exactly what the test says. The apps are
in ``tests/apps/ping_app.py``.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import servers
from flask import Flask
from servers import Reply

from agentcore_sync import BedrockAgentCoreApp, PingStatus
from agentcore_sync.servers.inline_ping import MAX_HEAD, InlinePing, is_plain_ping

pytestmark = pytest.mark.e2e

SERVER_KINDS = ["gunicorn", "app.run"]
THREADS = 4
HOLD_SECONDS = 4.0
PING = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def start_server(kind: str, tmp: Path, variant: str = "plain", *args: str) -> servers.Server:
    env = {"PING_APP_VARIANT": variant}
    if kind == "gunicorn":
        env["AGENTCORE_SYNC_THREADS"] = str(THREADS)
        return servers.gunicorn("ping_app:app", tmp, *args, env=env)
    env["PING_APP_THREADS"] = str(THREADS)
    return servers.run_script(servers.APPS / "ping_app.py", tmp, env=env)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Server]:
    tmp = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    with servers.serving(start_server(request.param, tmp)) as running:
        yield running


class RawConnection:
    """One keep-alive connection; answers are read exactly, by their Content-Length."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server; unread: {self.pending!r}")
        return chunk

    def reply(self) -> Reply:
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._more()
        head, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.split(":", 1) for line in lines)
        headers = {name.strip().lower(): value.strip() for name, value in fields.items()}
        length = int(headers["content-length"])
        while len(self.pending) < length:
            self.pending += self._more()
        body, self.pending = self.pending[:length], self.pending[length:]
        return Reply(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        return self.sock.recv(1) == b"" and not self.pending

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def connection(server: servers.Server) -> Iterator[RawConnection]:
    conn = RawConnection(server.port)
    yield conn
    conn.close()


def assert_ping(reply: Reply, status: str = "Healthy") -> None:
    assert reply.status == 200, reply
    assert reply.content_type == "application/json"
    body = reply.json()
    assert set(body) == {"status", "time_of_last_update"} and body["status"] == status, body


def hold_every_thread(url: str) -> list[threading.Thread]:
    """Start THREADS requests that each hold a server thread for HOLD_SECONDS."""

    def hold() -> None:
        requests.get(f"{url}/hold?seconds={HOLD_SECONDS}", timeout=30).raise_for_status()

    holders = [threading.Thread(target=hold) for _ in range(THREADS)]
    for holder in holders:
        holder.start()
    time.sleep(1.0)  # every hold has reached a thread; each lasts HOLD_SECONDS
    return holders


# -- on a real server ---------------------------------------------------------


def test_a_plain_ping_is_answered_while_every_server_thread_is_held(
    server: servers.Server, connection: RawConnection
) -> None:
    connection.send(PING)
    assert_ping(connection.reply())
    holders = hold_every_thread(server.url)
    try:
        began = time.monotonic()
        connection.send(PING)  # on the kept-alive connection
        assert_ping(connection.reply())
        fresh = RawConnection(server.port)  # and on a new one
        fresh.send(PING)
        assert_ping(fresh.reply())
        fresh.close()
        waited = time.monotonic() - began
        # Answered while the holds still ran: no thread was free to answer them.
        assert all(holder.is_alive() for holder in holders), f"pings took {waited:.2f} s"
    finally:
        for holder in holders:
            holder.join(30)


def test_with_a_hook_on_the_app_a_ping_waits_for_a_thread_as_any_request(tmp_path: Path) -> None:
    # The counterpart of the test above: what it shows is the inline answer's doing.
    with servers.serving(start_server("gunicorn", tmp_path, "hook")) as running:
        holders = hold_every_thread(running.url)
        began = time.monotonic()
        reply = requests.get(running.url + "/ping", timeout=30)
        waited = time.monotonic() - began
        for holder in holders:
            holder.join(30)
        assert reply.headers["X-Marked-By"] == "hook"
        # The holds had about HOLD_SECONDS - 1 s left; the ping waited for one to end.
        assert waited > HOLD_SECONDS - 2.0, f"answered in {waited:.2f} s"


def test_the_inline_answer_is_the_apps_answer(
    server: servers.Server, connection: RawConnection
) -> None:
    connection.send(PING)
    inline = connection.reply()
    # "Connection: close" takes the app's path.
    connection.send(PING.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    through_app = connection.reply()
    assert connection.closed_by_server()
    assert_ping(inline)
    assert_ping(through_app)
    assert inline.body == through_app.body
    for name in ("content-type", "content-length", "server"):
        assert inline.headers[name] == through_app.headers[name], name
    assert "date" in inline.headers


def test_an_inline_ping_follows_the_tasks(
    server: servers.Server, connection: RawConnection
) -> None:
    requests.post(server.url + "/invocations", json={"task": 1.0}, timeout=10).raise_for_status()
    connection.send(PING)
    assert_ping(connection.reply(), "HealthyBusy")
    deadline = time.monotonic() + 10
    while True:
        connection.send(PING)
        if connection.reply().json()["status"] == "Healthy":
            break
        assert time.monotonic() < deadline, "still HealthyBusy 10 s after a 1 s task"
        time.sleep(0.05)


def test_requests_that_are_not_plain_pings_are_answered_in_order(
    server: servers.Server, connection: RawConnection
) -> None:
    body = json.dumps({"echo": 1}).encode()
    invocation = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    # Pipelined: a ping, an invocation and a ping in one segment.
    connection.send(PING + invocation + PING)
    assert_ping(connection.reply())
    echoed = connection.reply()
    assert echoed.status == 200 and echoed.json() == {"echo": 1}
    assert_ping(connection.reply())
    # A ping in two segments, one with a query, one with an empty body.
    connection.send(PING[:11])
    time.sleep(0.2)
    connection.send(PING[11:])
    assert_ping(connection.reply())
    connection.send(PING.replace(b"/ping", b"/ping?probe=1"))
    assert_ping(connection.reply())
    connection.send(PING.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"))
    assert_ping(connection.reply())
    # Not GET: the app's own 405.
    connection.send(PING.replace(b"GET", b"PUT"))
    assert connection.reply().status == 405
    # HTTP/1.0 without keep-alive: answered, then closed.
    connection.send(PING.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert_ping(connection.reply())
    assert connection.closed_by_server()


@pytest.mark.parametrize("kind", SERVER_KINDS)
@pytest.mark.parametrize("variant", ["custom", "middleware", "hook"])
def test_what_the_app_registered_runs_on_ping(kind: str, variant: str, tmp_path: Path) -> None:
    with servers.serving(start_server(kind, tmp_path, variant)) as running:
        conn = RawConnection(running.port)
        for _ in range(3):  # the first ping of a connection, and kept-alive ones
            conn.send(PING)
            reply = conn.reply()
            if variant == "custom":
                assert_ping(reply, "HealthyBusy")
            else:
                assert_ping(reply)
                assert reply.headers["x-marked-by"] == variant
        conn.close()


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_an_idle_new_connection_does_not_hold_up_a_stop(kind: str, tmp_path: Path) -> None:
    # gunicorn's worker keeps a new connection in its poller until the first
    # request, no longer on a pool thread that gives up after 5 s; stopping must
    # not wait the whole graceful timeout (30 s) for one that never sends.
    server = start_server(kind, tmp_path)
    with servers.serving(server) as running:
        idle = socket.create_connection(("127.0.0.1", running.port), timeout=5)
        time.sleep(0.5)
        began = time.monotonic()
        running.signal(signal.SIGTERM)
        assert running.wait(timeout=20) == 0, running.log()
        assert time.monotonic() - began < 10, running.log()
        idle.close()


def test_gunicorn_access_log_lists_every_ping(tmp_path: Path) -> None:
    log_path = tmp_path / "access.log"
    server = start_server("gunicorn", tmp_path, "plain", "--access-logfile", str(log_path))
    with servers.serving(server) as running:
        conn = RawConnection(running.port)
        for _ in range(3):
            conn.send(PING)
            assert_ping(conn.reply())
        conn.close()
        assert "Serving /ping on pool threads: access logging is on" in running.log()
    # The startup probe's ping, and these three.
    assert log_path.read_text().count('"GET /ping HTTP/1.1" 200') >= 4


# -- the pieces ---------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        PING,
        b"GET /ping HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nhost: x\r\nAccept: */*\r\nConnection: Keep-Alive\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost:x\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
    ],
)
def test_plain_pings(head: bytes) -> None:
    assert is_plain_ping(head)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        PING[:-2],  # not complete
        PING + PING,  # pipelined
        PING + b"x",  # something after it
        b"GET /ping HTTP/1.1\r\n\r\n",  # no Host
        b"GET /ping HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /ping HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET /ping?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /pings HTTP/1.1\r\nHost: a\r\n\r\n",
        b"get /ping HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HEAD /ping HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET /ping HTTP/1.1\nHost: a\n\n",  # bare LF
        b"GET /ping HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
        b"GET /ping HTTP/1.1\r\nHost : a\r\n\r\n",  # space before the colon
        b"GET /ping HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: a\r\nX: " + b"y" * MAX_HEAD + b"\r\n\r\n",
    ],
)
def test_what_is_not_a_plain_ping(head: bytes) -> None:
    assert not is_plain_ping(head)


def test_inline_ping_serves_only_the_runtimes_app_as_defined() -> None:
    assert InlinePing.for_served(Flask(__name__), b"") is None

    class Dispatching(BedrockAgentCoreApp):
        def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
            return super().wsgi_app(environ, start_response)

    assert InlinePing.for_served(Dispatching(result_store="memory://"), b"") is None

    app = BedrockAgentCoreApp(result_store="memory://")
    inline = InlinePing.for_served(app, b"Server: test\r\n")
    assert inline is not None
    answer = inline.response()
    assert answer is not None
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nServer: test" in head
    assert b"Content-Length: %d\r\n" % len(body) in head
    assert json.loads(body)["status"] == "Healthy"

    app.force_ping_status(PingStatus.HEALTHY_BUSY)
    answer = inline.response()
    assert answer is not None and b'"HealthyBusy"' in answer
    app.clear_forced_ping_status()

    inner = app.wsgi_app
    app.wsgi_app = lambda environ, start_response: inner(environ, start_response)  # type: ignore[method-assign]
    assert inline.response() is None  # middleware came after the server started
