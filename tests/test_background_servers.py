"""Background work against real servers: start-and-poll, restarts, signals, Redis."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests
import servers

from agentcore_sync.stores import open_store

pytestmark = pytest.mark.e2e

TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
APP = "background_app:app"


def invoke(server: servers.Server, payload: dict, timeout: float = 10) -> dict:
    response = requests.post(server.url + "/invocations", json=payload, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()


def start(server: servers.Server, **payload) -> int:
    return invoke(server, {"action": "start", **payload})["task_id"]


def record(server: servers.Server, task_id: int) -> dict | None:
    return invoke(server, {"action": "result", "task_id": task_id})["record"]


def wait_terminal(server: servers.Server, task_id: int, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = record(server, task_id)
        if current is not None and current["status"] in TERMINAL:
            return current
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not finished in {timeout}s: {record(server, task_id)}")


def stored_record(tmp_path: Path, task_id: int) -> dict | None:
    """The record as the server's SQLite store holds it, read after the server is gone."""
    store = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    try:
        return store.get(task_id)
    finally:
        store.close()


def ping(server: servers.Server) -> str:
    return requests.get(server.url + "/ping", timeout=5).json()["status"]


def make_server(kind: str, tmp_path: Path, env: dict | None = None, port: int | None = None):
    if kind == "gunicorn":
        return servers.gunicorn(APP, tmp_path, env=env, port=port)
    return servers.run_script(servers.APPS / "background_app.py", tmp_path, env=env, port=port)


@pytest.fixture(params=["waitress", "gunicorn"])
def server(request, tmp_path):
    with servers.serving(make_server(request.param, tmp_path)) as running:
        yield running


def test_start_answers_at_once_then_poll_until_succeeded(server):
    start(server, seconds=0)  # warm up: store opened, threads started
    t0 = time.perf_counter()
    task_id = start(server, seconds=2, value="answer")
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.05, f"start took {elapsed * 1000:.1f} ms"
    assert ping(server) == "HealthyBusy"
    running = record(server, task_id)
    assert running["status"] in ("queued", "running")
    info = invoke(server, {"action": "info"})
    assert task_id in [job["task_id"] for job in info["running_jobs"]]

    done = wait_terminal(server, task_id)
    assert done["status"] == "succeeded"
    assert done["result"] == {"value": "answer", "slept": 2}
    assert done["error"] is None
    assert done["duration"] >= 2
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    assert done["ping_status_after"] == "Healthy"
    assert ping(server) == "Healthy"


def test_failing_task_is_recorded_failed_and_status_returns_to_healthy(server):
    task_id = start(server, seconds=0.3, fail=True)
    done = wait_terminal(server, task_id)
    assert done["status"] == "failed"
    assert "job failed on purpose" in done["error"]
    assert done["result"] is None
    assert ping(server) == "Healthy"


def test_coroutine_task_over_http(server):
    task_id = start(server, coro=True, seconds=0.3, value=[1, 2])
    assert ping(server) == "HealthyBusy"
    done = wait_terminal(server, task_id)
    assert (done["status"], done["result"]) == ("succeeded", {"value": [1, 2]})


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_finished_results_survive_a_restart(kind, tmp_path):
    port = servers.free_port()
    with servers.serving(make_server(kind, tmp_path, port=port)) as first:
        task_id = start(first, seconds=0, value="kept")
        assert wait_terminal(first, task_id)["status"] == "succeeded"
    with servers.serving(make_server(kind, tmp_path, port=port)) as second:
        kept = record(second, task_id)
    assert kept["status"] == "succeeded"
    assert kept["result"] == {"value": "kept", "slept": 0}


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_sigkill_while_running_reads_interrupted_after_restart(kind, tmp_path):
    port = servers.free_port()
    first = make_server(kind, tmp_path, port=port).start()
    try:
        task_id = start(first, seconds=30)
        time.sleep(0.3)  # the "running" record reaches the store
        assert record(first, task_id)["status"] == "running"
    finally:
        first.kill()
    with servers.serving(make_server(kind, tmp_path, port=port)) as second:
        after = record(second, task_id)
    assert after["status"] == "interrupted"
    assert after["finished_at"] is not None


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_sigterm_waits_for_a_task_shorter_than_the_grace(kind, tmp_path):
    env = {"AGENTCORE_SYNC_SHUTDOWN_GRACE": "10"}
    server = make_server(kind, tmp_path, env=env).start()
    try:
        task_id = start(server, seconds=1.5, value="finished")
        server.signal(signal.SIGTERM)
        server.wait(20)
    finally:
        server.kill()
    final = stored_record(tmp_path, task_id)
    assert final["status"] == "succeeded", server.log()
    assert final["result"] == {"value": "finished", "slept": 1.5}


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_sigterm_records_interrupted_when_the_grace_is_shorter(kind, tmp_path):
    env = {"AGENTCORE_SYNC_SHUTDOWN_GRACE": "0.5"}
    server = make_server(kind, tmp_path, env=env).start()
    try:
        task_id = start(server, seconds=20)
        time.sleep(0.2)
        server.signal(signal.SIGTERM)
        server.wait(20)
    finally:
        server.kill()
    final = stored_record(tmp_path, task_id)
    assert final["status"] == "interrupted", server.log()
    assert "shut down" in final["error"]


def test_two_servers_sharing_redis_see_each_others_results(redis_url, tmp_path):
    env = {"AGENTCORE_SYNC_RESULT_STORE": redis_url}
    with (
        servers.serving(servers.gunicorn(APP, tmp_path, env=env)) as one,
        servers.serving(make_server("waitress", tmp_path, env=env)) as two,
    ):
        from_one = start(one, seconds=0.2, value="from one")
        from_two = start(two, coro=True, seconds=0.2, value="from two")
        assert wait_terminal(two, from_one)["result"] == {"value": "from one", "slept": 0.2}
        assert wait_terminal(one, from_two)["result"] == {"value": "from two"}


def test_redis_outage_while_tasks_run_crashes_nothing_and_loses_nothing(redis_server, tmp_path):
    env = {"AGENTCORE_SYNC_RESULT_STORE": redis_server.url}
    with servers.serving(make_server("waitress", tmp_path, env=env)) as server:
        task_ids = [start(server, seconds=1.0, value=i) for i in range(3)]
        redis_server.stop()
        # The tasks finish while Redis is down; the server keeps serving.
        time.sleep(1.5)
        assert ping(server) == "Healthy"
        for i, task_id in enumerate(task_ids):
            kept = record(server, task_id)
            assert kept["status"] == "succeeded" and kept["result"]["value"] == i
        redis_server.start()
        store = open_store(redis_server.url)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                written = [store.get(task_id) for task_id in task_ids]
                if all(r is not None and r["status"] == "succeeded" for r in written):
                    break
                time.sleep(0.2)
            assert [r["result"]["value"] for r in written] == [0, 1, 2], server.log()
        finally:
            store.close()
    assert "result store" in server.log()
