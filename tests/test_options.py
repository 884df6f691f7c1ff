"""The constructor options on real servers: lifespan, middleware, busy_while_invoking, keep-alive.

The agent is ``tests/apps/options_app.py``; the same options in process are
in ``test_options_unit.py``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import servers

pytestmark = pytest.mark.e2e

APP = "options_app:app"
SCRIPT = servers.APPS / "options_app.py"
WAIT = 20.0  # seconds, an upper bound for what happens at once


def cli_serve(tmp: Path, *args: str, env: dict[str, str]) -> servers.Server:
    """``agentcore-sync serve options_app:app`` on a free port."""
    port = servers.free_port()
    argv = [sys.executable, "-m", "agentcore_sync", "serve", APP, "--port", str(port), *args]
    environment = servers._env(env, tmp)
    return servers.Server(argv, port, environment, tmp / f"serve-{port}.log", servers.ROOT)


def lifespan_env(tmp: Path, kind: str) -> dict[str, str]:
    return {"OPTIONS_LIFESPAN": kind, "OPTIONS_EVENTS": str(tmp / "events.txt")}


def events(tmp: Path) -> list[list[str]]:
    path = tmp / "events.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def invoke(url: str, payload: Any = None) -> Any:
    answer = requests.post(url + "/invocations", json=payload or {}, timeout=WAIT)
    answer.raise_for_status()
    return answer.json()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "not within the time bound"
        time.sleep(0.05)


SERVERS: dict[str, Callable[[Path, dict[str, str]], servers.Server]] = {
    "run": lambda tmp, env: servers.run_script(SCRIPT, tmp, env=env),
    "serve": lambda tmp, env: cli_serve(tmp, env=env),
    "serve-gunicorn": lambda tmp, env: cli_serve(tmp, "--server", "gunicorn", env=env),
    "gunicorn": lambda tmp, env: servers.gunicorn(APP, tmp, env=env),
    "waitress-serve": lambda tmp, env: servers.waitress(APP, tmp, env=env),
}


# -- lifespan -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("server", ["run", "serve", "serve-gunicorn", "gunicorn"])
def test_the_lifespan_is_entered_before_serving_and_exited_on_sigterm(
    server: str, kind: str, tmp_path: Path
) -> None:
    with servers.serving(SERVERS[server](tmp_path, lifespan_env(tmp_path, kind))) as s:
        answer = invoke(s.url)
        assert answer["entered"] is True
        # An async lifespan runs on the loop that runs coroutine handlers.
        assert answer["on_lifespan_loop"] is (kind == "async")
        entered = events(tmp_path)
        assert [line[0] for line in entered] == ["enter"]
        if kind == "async":
            assert entered[0][2] == "agentcore-loop"
    log = s.log()
    assert events(tmp_path) == [*entered, ["exit", entered[0][1]]], log
    assert "Lifespan exited" in log


def test_under_gunicorn_each_worker_enters_and_exits_its_own(tmp_path: Path) -> None:
    env = lifespan_env(tmp_path, "async")
    with servers.serving(servers.gunicorn(APP, tmp_path, "-w", "2", env=env)):
        wait_for(lambda: len(events(tmp_path)) == 2)
        pids = {line[1] for line in events(tmp_path)}
        assert len(pids) == 2
    exits = [line for line in events(tmp_path) if line[0] == "exit"]
    assert {line[1] for line in exits} == pids


def test_under_waitress_serve_the_first_request_enters_it_and_the_process_exit_exits_it(
    tmp_path: Path,
) -> None:
    server = servers.waitress(APP, tmp_path, env=lifespan_env(tmp_path, "sync"))
    with servers.serving(server) as s:
        # The first request (the start-up ping) entered it before it was answered.
        assert [line[0] for line in events(tmp_path)] == ["enter"]
        assert invoke(s.url)["entered"] is True
        # waitress-serve stops on Ctrl-C; at interpreter exit the runtime exits its lifespan.
        s.signal(signal.SIGINT)
        s.wait(WAIT)
    assert [line[0] for line in events(tmp_path)] == ["enter", "exit"], s.log()


@pytest.mark.parametrize(
    ("server", "exit_code"), [("run", 1), ("serve", 1), ("gunicorn", 3), ("serve-gunicorn", 3)]
)
def test_a_lifespan_that_fails_on_entry_stops_the_server_with_the_error_shown(
    server: str, exit_code: int, tmp_path: Path
) -> None:
    s = SERVERS[server](tmp_path, lifespan_env(tmp_path, "fail"))
    with pytest.raises(RuntimeError, match="server exited"):
        s.start()
    assert s.process is not None and s.process.returncode == exit_code
    log = s.log()
    assert "The app's lifespan failed on entry" in log
    assert "RuntimeError: the database is unreachable" in log
    if exit_code == 3:  # gunicorn stops rather than boot new workers that fail alike
        assert "Worker failed to boot" in log
        assert log.count("Booting worker") == 1


def test_under_waitress_serve_a_failed_lifespan_answers_every_request_500(tmp_path: Path) -> None:
    server = servers.waitress(APP, tmp_path, env=lifespan_env(tmp_path, "fail"))
    with servers.serving(server) as s:
        for answer in (
            requests.get(s.url + "/ping", timeout=WAIT),
            requests.post(s.url + "/invocations", json={}, timeout=WAIT),
        ):
            assert answer.status_code == 500
            assert answer.json()["error"] == "Lifespan failed"
            assert "RuntimeError: the database is unreachable" in answer.json()["details"]
    assert "The app's lifespan failed on entry" in s.log()


# -- middleware -----------------------------------------------------------------


@pytest.mark.parametrize("server", ["run", "gunicorn", "waitress-serve"])
def test_middleware_sees_every_request_the_first_in_the_list_first(
    server: str, tmp_path: Path
) -> None:
    with servers.serving(SERVERS[server](tmp_path, {})) as s:
        session = requests.Session()  # kept alive: pings a server could answer itself
        for _ in range(3):
            ping = session.get(s.url + "/ping", timeout=WAIT)
            assert ping.json()["status"] == "Healthy"
            assert ping.headers["X-Seen-By-First"] == "first"
            assert ping.headers["X-Seen-By-Second"] == "first,second"
        answer = session.post(s.url + "/invocations", json={}, timeout=WAIT)
        assert answer.json()["seen"] == ["first", "second"]
        assert answer.headers["X-Seen-By-Second"] == "first,second"


# -- busy while invoking --------------------------------------------------------


def statuses(url: str, count: int = 1) -> set[str]:
    """The statuses of ``count`` pings, each on a new connection (any worker may answer)."""
    return {requests.get(url + "/ping", timeout=WAIT).json()["status"] for _ in range(count)}


def invoking(url: str, payload: Any) -> threading.Thread:
    """An invocation of ``payload`` under way, on a thread of its own."""
    thread = threading.Thread(target=invoke, args=(url, payload))
    thread.start()
    return thread


BUSY_ENV = {"AGENTCORE_SYNC_BUSY_WHILE_INVOKING": "1"}


@pytest.mark.parametrize("server", ["gunicorn", "waitress-serve"])
def test_busy_while_invoking_during_a_slow_invocation_and_healthy_after(
    server: str, tmp_path: Path
) -> None:
    with servers.serving(SERVERS[server](tmp_path, BUSY_ENV)) as s:
        assert statuses(s.url) == {"Healthy"}
        slow = invoking(s.url, {"sleep": 4})
        wait_for(lambda: statuses(s.url) == {"HealthyBusy"})
        assert slow.is_alive()
        slow.join(WAIT)
        # An invocation's slot is given back before its answer is sent.
        assert statuses(s.url) == {"Healthy"}


def test_without_the_option_a_slow_invocation_leaves_the_agent_healthy(tmp_path: Path) -> None:
    with servers.serving(SERVERS["gunicorn"](tmp_path, {})) as s:
        slow = invoking(s.url, {"sleep": 2})
        seen: set[str] = set()
        while slow.is_alive():
            seen |= statuses(s.url)
        assert seen == {"Healthy"}


def test_busy_while_invoking_counts_every_gunicorn_worker(tmp_path: Path) -> None:
    with servers.serving(servers.gunicorn(APP, tmp_path, "-w", "2", env=BUSY_ENV)) as s:
        slow = invoking(s.url, {"sleep": 4})
        wait_for(lambda: statuses(s.url) == {"HealthyBusy"})
        assert statuses(s.url, 10) == {"HealthyBusy"}  # whichever worker answers
        slow.join(WAIT)
        wait_for(lambda: statuses(s.url, 10) == {"Healthy"})


@pytest.mark.parametrize("server", ["gunicorn", "waitress-serve"])
def test_busy_while_invoking_holds_until_a_stream_is_closed(server: str, tmp_path: Path) -> None:
    with servers.serving(SERVERS[server](tmp_path, BUSY_ENV)) as s:
        payload = {"stream": ["a", "b"], "gap": 2}
        with requests.post(s.url + "/invocations", json=payload, stream=True, timeout=WAIT) as r:
            lines = r.iter_lines()
            assert next(lines) == b'data: "a"'
            assert statuses(s.url) == {"HealthyBusy"}
            assert [line for line in lines if line] == [b'data: "b"']
        wait_for(lambda: statuses(s.url) == {"Healthy"})


# -- SSE keep-alive -------------------------------------------------------------


def stream_body(url: str, payload: Any) -> bytes:
    with requests.post(url + "/invocations", json=payload, stream=True, timeout=WAIT) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        return b"".join(answer.iter_content(chunk_size=None))


@pytest.mark.parametrize("server", ["gunicorn", "waitress-serve", "serve"])
def test_a_silent_stream_sends_keepalive_comments_after_the_gap(
    server: str, tmp_path: Path
) -> None:
    env = {"AGENTCORE_SYNC_SSE_KEEPALIVE": "0.2"}
    with servers.serving(SERVERS[server](tmp_path, env)) as s:
        body = stream_body(s.url, {"stream": ["a", "b"], "gap": 1.5})
    head, comment, tail = body.partition(b": keep-alive\n\n")
    assert comment and head == b'data: "a"\n\n', body
    # The source was consumed on its own schedule: its items whole, in order, between
    # them only comments.
    assert tail.replace(b": keep-alive\n\n", b"") == b'data: "b"\n\n', body
    assert servers.parse_sse(body.replace(b": keep-alive\n\n", b"")) == ["a", "b"]


def test_keepalive_is_off_by_default(tmp_path: Path) -> None:
    with servers.serving(SERVERS["gunicorn"](tmp_path, {})) as s:
        body = stream_body(s.url, {"stream": ["a", "b"], "gap": 1})
    assert body == b'data: "a"\n\ndata: "b"\n\n'
