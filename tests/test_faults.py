"""Faults (issue 6): what a handler, a ping function, a store or a signal can do to a server.

Against real servers (``tests/apps/hardening_app.py`` on waitress via ``app.run()``
and on gunicorn with the shipped config):

- a handler that raises ``SystemExit`` or ``KeyboardInterrupt`` (directly, from a
  coroutine on the runtime's loop, from a streaming generator, from a background
  task) is contained: the client gets an answer, the process keeps serving;
- ``os._exit`` cannot be contained by anything in the process. What happens
  instead is pinned down here: gunicorn's arbiter starts a new worker, which
  answers ``/ping`` within seconds; ``app.run()`` ends with the handler's exit
  code and needs a supervisor (in AgentCore, the managed runtime). Either way the
  background tasks of the dead process read ``interrupted`` afterwards;
- a custom ``@app.ping`` function that raises, returns junk, recurses, calls
  ``SystemExit`` or hangs: ``/ping`` still answers within 1 s, and a hanging one
  falls back to the automatic status after ``ping_timeout`` (0.5 s by default,
  0.2 s configured on the gunicorn server here);
- a Redis result store that disappears mid-run and comes back: tasks and requests
  go on, records wait in memory and are written once it is back; a store that
  cannot be opened at all leaves no task behind;
- SIGTERM mid-task: a task that finishes within the grace period is recorded
  ``succeeded``, one that does not ``interrupted``, and an invocation in flight
  gets its answer; SIGKILL mid-task: running and queued tasks read ``interrupted``
  after a restart;
- a client that disconnects mid-stream releases the stream's task and slot.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import servers
from soak import ACTION, TERMINAL, Client, hardening_server, wait_for

from agentcore_sync.stores import open_store

pytestmark = pytest.mark.e2e

PING_WITHIN = 1.0
#: ping_timeout of each server kind in the module-scoped servers (None: the default).
PING_TIMEOUTS = {"waitress": None, "gunicorn": 0.2}
DEFAULT_PING_TIMEOUT = 0.5


def ping_timeout(kind: str) -> float:
    return PING_TIMEOUTS[kind] or DEFAULT_PING_TIMEOUT


def store_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'results.db'}"


@pytest.fixture(scope="module", params=["waitress", "gunicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp(f"faults-{request.param}")
    env = {"HARDENING_CUSTOM_PING": "1", "AGENTCORE_SYNC_RESULT_STORE": store_url(tmp)}
    if PING_TIMEOUTS[request.param] is not None:
        env["HARDENING_PING_TIMEOUT"] = str(PING_TIMEOUTS[request.param])
    with servers.serving(hardening_server(request.param, tmp, env=env)) as running:
        running.kind = request.param  # type: ignore[attr-defined]
        yield running


@pytest.fixture
def client(server: Any) -> Iterator[Client]:
    client = Client(server.url)
    client.call("set_ping_mode", mode="auto")
    yield client
    client.close()


def timed_ping(url: str) -> tuple[str, float]:
    client = Client(url, timeout=5)
    try:
        started = time.perf_counter()
        answer = client.ping()
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/json"
    status = answer.json()["status"]
    assert status in ("Healthy", "HealthyBusy"), answer.body
    return status, elapsed


def assert_idle(client: Client, timeout: float = 5.0) -> None:
    """No task active, and only the asking invocation holds a slot."""

    def idle() -> bool:
        info = client.call("info")
        return info["active_count"] == 0 and info["in_flight"] == 1

    assert wait_for(idle, timeout), client.call("info")


def wait_terminal(client: Client, task_id: int, timeout: float = 15.0) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        record = client.call("result", task_id=task_id)["record"]
        return record if record and record["status"] in TERMINAL else None

    record = wait_for(terminal, timeout, interval=0.05)
    assert record, client.call("result", task_id=task_id)
    return record


# -- BaseException from handlers ----------------------------------------------------


@pytest.mark.parametrize(
    "payload, error",
    [
        ({ACTION: "system_exit", "code": 3}, "SystemExit"),
        ({ACTION: "keyboard_interrupt"}, "KeyboardInterrupt"),
        ({ACTION: "coroutine_exit", "how": "system_exit"}, "SystemExit"),
        ({ACTION: "coroutine_exit", "how": "keyboard_interrupt"}, "KeyboardInterrupt"),
    ],
    ids=["SystemExit", "KeyboardInterrupt", "coroutine SystemExit", "coroutine KeyboardInterrupt"],
)
def test_handler_base_exceptions_are_contained(
    server: Any, client: Client, payload: dict[str, Any], error: str
) -> None:
    pid = client.call("proc")["pid"]
    for _ in range(3):
        answer = client.invoke(payload)
        assert answer.status == 500, answer.body
        assert answer.content_type == "application/json"
        assert error in answer.json()["error"]
        assert "Traceback" not in answer.body.decode()
    _, elapsed = timed_ping(server.url)
    assert elapsed < PING_WITHIN
    assert client.call("proc")["pid"] == pid, "the serving process changed: not contained"
    assert_idle(client)


def read_stream(url: str, payload: dict[str, Any], timeout: float = 3.0) -> tuple[int, bytes]:
    """POST a streaming invocation and read its whole body; raises when it does not end."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(
            "POST", "/invocations", json.dumps(payload), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("after", [0, 2], ids=["before the first item", "after two items"])
@pytest.mark.parametrize("how", ["system_exit", "keyboard_interrupt"])
def test_stream_base_exceptions_are_contained(
    server: Any, client: Client, how: str, after: int
) -> None:
    """A streaming generator that raises SystemExit/KeyboardInterrupt ends its stream like
    any other error (the contract's last event), and the server keeps serving."""
    pid = client.call("proc")["pid"]
    payload = {ACTION: "stream_exit", "how": how, "after": after}
    try:
        status, body = read_stream(server.url, payload)
    except (OSError, http.client.HTTPException) as exc:
        pytest.fail(f"the stream did not end with an answer: {type(exc).__name__}: {exc}")
    finally:
        # Whatever happened to the stream, the server must still be the same one.
        pid_after = wait_for(lambda: _pid_or_none(server.url), 10)
    assert pid_after == pid, f"the serving process changed ({pid} -> {pid_after}): not contained"
    assert status == 200, body
    events = [json.loads(chunk[len(b"data: ") :]) for chunk in body.split(b"\n\n") if chunk]
    assert [event["i"] for event in events[:-1]] == list(range(after))
    assert events[-1]["message"] == "An error occurred during streaming"
    assert events[-1]["error_type"] == (
        "SystemExit" if how == "system_exit" else "KeyboardInterrupt"
    )
    assert_idle(client)


def _pid_or_none(url: str) -> int | None:
    try:
        client = Client(url, timeout=5)
        try:
            return int(client.call("proc")["pid"])
        finally:
            client.close()
    except (OSError, AssertionError, http.client.HTTPException):
        return None


@pytest.mark.parametrize("how", ["system_exit", "keyboard_interrupt"])
def test_background_base_exceptions_are_recorded_failed(
    server: Any, client: Client, how: str
) -> None:
    pid = client.call("proc")["pid"]
    task_id = client.call("start", kind="exit", how=how)["task_id"]
    record = wait_terminal(client, task_id)
    assert record["status"] == "failed"
    assert record["error"].startswith("SystemExit" if how == "system_exit" else "KeyboardInterrupt")
    # The pool that ran it still runs tasks; the process is the same.
    after = client.call("start", kind="thread", value="after")["task_id"]
    assert wait_terminal(client, after)["result"] == {"value": "after"}
    assert client.call("proc")["pid"] == pid
    assert_idle(client)


# -- os._exit: not containable, the outcome pinned down -------------------------------


def test_os_exit_under_gunicorn_a_new_worker_serves_and_tasks_read_interrupted(
    tmp_path: Path,
) -> None:
    server = hardening_server("gunicorn", tmp_path, env={"AGENTCORE_SYNC_SHUTDOWN_GRACE": "1"})
    with servers.serving(server):
        client = Client(server.url)
        old_pid = client.call("proc")["pid"]
        task_id = client.call("start", kind="thread", seconds=30)["task_id"]
        wait_for(lambda: client.call("result", task_id=task_id)["record"]["status"] == "running", 5)
        time.sleep(0.3)  # the "running" record reaches the store
        with pytest.raises((OSError, http.client.HTTPException)):
            Client(server.url, timeout=5).invoke({ACTION: "os_exit", "code": 7})
        started = time.monotonic()
        new_pid = wait_for(lambda: (p := _pid_or_none(server.url)) != old_pid and p, 15)
        assert new_pid and new_pid != old_pid, "no new worker"
        print(f"\ngunicorn: a new worker answered {time.monotonic() - started:.2f}s after os._exit")
        _, elapsed = timed_ping(server.url)
        assert elapsed < PING_WITHIN
        client = Client(server.url)
        record = wait_terminal(client, task_id, timeout=10)
        assert record["status"] == "interrupted", record
        # The dead worker's task leaves the shared count once its heartbeat is stale.
        assert wait_for(lambda: timed_ping(server.url)[0] == "Healthy", 5)
        client.close()


def test_os_exit_under_app_run_ends_the_process_and_tasks_read_interrupted(
    tmp_path: Path,
) -> None:
    port = servers.free_port()
    first = hardening_server("waitress", tmp_path, port=port).start()
    try:
        client = Client(first.url)
        task_id = client.call("start", kind="thread", seconds=30)["task_id"]
        wait_for(lambda: client.call("result", task_id=task_id)["record"]["status"] == "running", 5)
        time.sleep(0.3)
        with pytest.raises((OSError, http.client.HTTPException)):
            Client(first.url, timeout=5).invoke({ACTION: "os_exit", "code": 7})
        assert first.wait(10) == 7, "os._exit(7) ends the process with its code"
    finally:
        first.kill()
    # A supervisor restarts it (in AgentCore: the managed runtime); the record is honest.
    with servers.serving(hardening_server("waitress", tmp_path, port=port)) as second:
        client = Client(second.url)
        assert wait_terminal(client, task_id, timeout=10)["status"] == "interrupted"
        client.close()


# -- custom ping functions --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["raise", "junk", "none", "recurse", "ask", "exit"])
def test_failing_custom_ping_falls_back_within_a_second(
    server: Any, client: Client, mode: str
) -> None:
    client.call("set_ping_mode", mode=mode)
    for _ in range(5):
        status, elapsed = timed_ping(server.url)
        assert elapsed < PING_WITHIN, (
            f"/ping took {elapsed:.3f}s with a custom function that {mode}"
        )
        assert status == "Healthy"  # the automatic status: nothing is running
    task_id = client.call("start", kind="coro", seconds=1.0)["task_id"]
    status, elapsed = timed_ping(server.url)
    assert (status, elapsed < PING_WITHIN) == ("HealthyBusy", True)
    wait_terminal(client, task_id)
    client.call("set_ping_mode", mode="busy")
    assert timed_ping(server.url)[0] == "HealthyBusy", "a working custom function is used again"
    client.call("set_ping_mode", mode="auto")


def test_hanging_custom_ping_falls_back_after_ping_timeout(server: Any, client: Client) -> None:
    timeout = ping_timeout(server.kind)
    client.call("set_ping_mode", mode="hang")
    try:
        status, first = timed_ping(server.url)
        assert status == "Healthy"
        assert timeout - 0.05 <= first < min(PING_WITHIN, timeout + 0.4), (
            f"first /ping with a hanging custom function took {first:.3f}s; "
            f"ping_timeout is {timeout}s"
        )
        # While it still hangs, pings do not wait for it again, even many at once.
        elapsed: list[float] = []

        def ping() -> None:
            elapsed.append(timed_ping(server.url)[1])

        threads = [threading.Thread(target=ping) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(elapsed) == 10 and max(elapsed) < PING_WITHIN, elapsed
        assert sorted(elapsed)[5] < timeout / 2, f"pings waited for the hung function: {elapsed}"
        # The automatic status it falls back to follows the tasks.
        task_id = client.call("start", kind="coro", seconds=1.0)["task_id"]
        assert timed_ping(server.url)[0] == "HealthyBusy"
        wait_terminal(client, task_id)
        assert timed_ping(server.url)[0] == "Healthy"
    finally:
        client.call("set_ping_mode", mode="busy")  # releases the hung call
    assert wait_for(lambda: timed_ping(server.url)[0] == "HealthyBusy", 3)
    client.call("set_ping_mode", mode="auto")
    assert f"did not answer within {timeout:g}s" in server.log()


# -- a result store that disappears -------------------------------------------------------


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_redis_store_disappears_mid_run_and_comes_back(
    kind: str, tmp_path: Path, redis_server: Any
) -> None:
    env = {"AGENTCORE_SYNC_RESULT_STORE": redis_server.url}
    with servers.serving(hardening_server(kind, tmp_path, env=env)) as server:
        client = Client(server.url)
        before = [client.call("start", kind="thread", value=n)["task_id"] for n in range(3)]
        for task_id in before:
            assert wait_terminal(client, task_id)["status"] == "succeeded"

        redis_server.stop()
        expected: dict[int, str] = {}
        for n in range(12):
            fields: dict[str, Any] = {"kind": "coro" if n % 2 else "thread", "value": n}
            if n % 3 == 0:
                fields["fail"] = True
            started = time.perf_counter()
            task_id = client.call("start", **fields)["task_id"]
            assert time.perf_counter() - started < 1.0, "starting a task waited on the store"
            expected[task_id] = "failed" if fields.get("fail") else "succeeded"
        for task_id, status in expected.items():
            assert wait_terminal(client, task_id)["status"] == status
            assert timed_ping(server.url)[1] < PING_WITHIN
        assert client.invoke({"still": "serving"}).status == 200
        assert_idle(client)

        redis_server.start()
        store = open_store(redis_server.url)
        try:
            # The test's redis-server keeps nothing on disk: what was written before
            # the outage went with it. What matters is what was kept in memory meanwhile.
            def all_written() -> bool:
                records = [store.get(task_id) for task_id in expected]
                return all(r is not None and r["status"] in TERMINAL for r in records)

            assert wait_for(all_written, 15, interval=0.2), (
                "records not written once Redis was back"
            )
            for task_id, status in expected.items():
                assert store.get(task_id)["status"] == status
        finally:
            store.close()
        client.close()
        log = server.log()
    outage_lines = [line for line in log.split("\n") if "is failing" in line]
    assert len(outage_lines) == 1, outage_lines


def test_store_that_cannot_be_opened_leaks_no_task(tmp_path: Path) -> None:
    """A result store URL that cannot be opened (here: a malformed port) fails the start,
    and leaves nothing behind: no task stuck in the registry (/ping back to Healthy),
    and a shutdown that ends cleanly."""
    env = {
        "AGENTCORE_SYNC_RESULT_STORE": "redis://127.0.0.1:notaport/0",
        "AGENTCORE_SYNC_SHUTDOWN_GRACE": "3",
    }
    server = hardening_server("waitress", tmp_path, env=env).start()
    try:
        client = Client(server.url)
        answer = client.invoke({ACTION: "start", "kind": "thread"})
        assert answer.status == 500 and "malformed Redis store URL" in answer.json()["error"]
        info = client.call("info")
        client.close()
        assert info["active_count"] == 0, f"a task that never started stays registered: {info}"
        assert timed_ping(server.url)[0] == "Healthy"
        server.signal(signal.SIGTERM)
        assert server.wait(10) == 0
    finally:
        server.kill()
    tracebacks = [line for line in server.log().split("\n") if line.startswith("Traceback")]
    assert not tracebacks, server.log()[-2000:]


# -- signals mid-task -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_sigterm_mid_task(kind: str, tmp_path: Path) -> None:
    """SIGTERM: tasks that finish within the grace period succeed, the rest read
    interrupted; an invocation in flight is answered; the process exits."""
    env = {"AGENTCORE_SYNC_SHUTDOWN_GRACE": "2", "AGENTCORE_SYNC_RESULT_STORE": store_url(tmp_path)}
    server = hardening_server(kind, tmp_path, env=env).start()
    try:
        client = Client(server.url)
        short = client.call("start", kind="thread", seconds=1.0)["task_id"]
        long_thread = client.call("start", kind="thread", seconds=60)["task_id"]
        long_coro = client.call("start", kind="coro", seconds=60)["task_id"]
        client.close()
        outcome: dict[str, Any] = {}

        def in_flight() -> None:
            try:
                outcome["answer"] = Client(server.url).invoke({ACTION: "sleep", "seconds": 1.0})
            except Exception as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=in_flight)
        thread.start()
        time.sleep(0.4)
        server.signal(signal.SIGTERM)
        server.wait(20)
        thread.join(10)
    finally:
        server.kill()
    store = open_store(store_url(tmp_path))
    try:
        records = {task_id: store.get(task_id) for task_id in (short, long_thread, long_coro)}
    finally:
        store.close()
    assert records[short]["status"] == "succeeded", records[short]
    assert records[long_thread]["status"] == "interrupted", records[long_thread]
    assert records[long_coro]["status"] == "interrupted", records[long_coro]
    for record in records.values():
        assert record["finished_at"] is not None
    assert "answer" in outcome, f"the invocation in flight got no answer: {outcome}"
    assert outcome["answer"].status == 200, outcome["answer"].body


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_sigkill_mid_task_running_and_queued_tasks_read_interrupted(
    kind: str, tmp_path: Path
) -> None:
    port = servers.free_port()
    env = {"AGENTCORE_SYNC_RESULT_STORE": store_url(tmp_path)}
    first = hardening_server(kind, tmp_path, env=env, port=port).start()
    try:
        client = Client(first.url)
        # Eight pool threads: the first eight run, the last two wait in the queue.
        ids = [client.call("start", kind="thread", seconds=60)["task_id"] for _ in range(10)]
        ids.append(client.call("start", kind="coro", seconds=60)["task_id"])

        # A pool thread moves a job from queued to running a moment after the submit.
        def settled() -> list[str] | None:
            states = [j["state"] for j in client.call("info")["running_jobs"]]
            return states if states.count("queued") == 2 else None

        states = wait_for(settled, timeout=5)
        assert states is not None, client.call("info")["running_jobs"]
        assert len(states) == 11, states
        time.sleep(0.5)  # records reach the store
        client.close()
    finally:
        first.kill()
    with servers.serving(hardening_server(kind, tmp_path, env=env, port=port)) as second:
        client = Client(second.url)
        for task_id in ids:
            record = wait_terminal(client, task_id, timeout=10)
            assert record["status"] == "interrupted", record
        assert timed_ping(second.url)[0] == "Healthy"
        client.close()


# -- a client that goes away mid-stream -------------------------------------------------


@pytest.mark.parametrize("action", ["stream_task", "astream_task"])
def test_client_disconnecting_mid_stream_releases_the_task(
    server: Any, client: Client, action: str
) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    body = json.dumps({ACTION: action, "count": 200, "interval": 0.05}).encode()
    sock.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    while b"data: " not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    assert timed_ping(server.url)[0] == "HealthyBusy"
    assert client.call("info")["active_count"] == 1
    gone = time.monotonic()
    sock.close()
    assert_idle(client, timeout=5)
    assert wait_for(lambda: timed_ping(server.url)[0] == "Healthy", 2)
    print(f"\n{server.kind}: {action} released {time.monotonic() - gone:.2f}s after the disconnect")


def test_zz_faults_left_no_trace(server: Any) -> None:
    """After all of the above, the module's server is the same process and idle."""
    client = Client(server.url)
    client.call("set_ping_mode", mode="auto")
    assert_idle(client)
    assert timed_ping(server.url)[0] == "Healthy"
    client.close()
