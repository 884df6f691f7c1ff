"""/ping under every server: admission control, multi-worker gunicorn, long invocations."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import servers

from agentcore_sync.core.admission import InvocationLimiter
from agentcore_sync.core.cluster import WorkerBoard

pytestmark = pytest.mark.e2e

APP = "background_app:app"
FRESH = {"Connection": "close"}


def post(server, payload, timeout=30):
    return requests.post(server.url + "/invocations", json=payload, headers=FRESH, timeout=timeout)


def timed_ping(server) -> tuple[float, str]:
    started = time.perf_counter()
    response = requests.get(server.url + "/ping", headers=FRESH, timeout=5)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    return elapsed, response.json()["status"]


def slots_server(kind, tmp_path):
    if kind == "gunicorn":
        return servers.gunicorn(APP, tmp_path, "--threads", "4")
    return servers.run_script(
        servers.APPS / "background_app.py", tmp_path, env={"BACKGROUND_APP_THREADS": "4"}
    )


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_ping_is_answered_while_every_invocation_slot_is_held(kind, tmp_path):
    """4 threads: 2 invocation slots, 2 kept for /ping."""
    with servers.serving(slots_server(kind, tmp_path)) as server, ThreadPoolExecutor(6) as pool:
        long_calls = [
            pool.submit(post, server, {"action": "sleep", "seconds": 3}) for _ in range(2)
        ]
        time.sleep(0.5)  # both hold their slot
        waiting = [pool.submit(post, server, {"action": "sleep", "seconds": 0}) for _ in range(4)]
        pings = [timed_ping(server) for _ in range(20)]
        assert all(status == "HealthyBusy" for _, status in pings), pings
        slowest = max(elapsed for elapsed, _ in pings)
        assert slowest < 0.1, f"slowest ping {slowest * 1000:.0f} ms"
        refused = [future.result() for future in waiting]
        for response in refused:
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert response.headers["Content-Type"] == "application/json"
            assert response.json()["error"] == "Too many concurrent invocations"
        assert all(future.result().status_code == 200 for future in long_calls)
        assert timed_ping(server)[1] == "Healthy"
        assert post(server, {"action": "sleep", "seconds": 0}).status_code == 200


def _worker_running(server, task_id) -> int:
    """The pid of the worker whose registry holds ``task_id``."""
    for _ in range(50):
        info = post(server, {"action": "info"}).json()
        for job in info["running_jobs"]:
            if job["task_id"] == task_id:
                return job["worker"]
    raise AssertionError("no worker reports the task")


@pytest.mark.parametrize(
    "worker_args", [(), ("-k", "sync", "--threads", "1")], ids=["gthread", "sync"]
)
def test_every_worker_of_a_gunicorn_server_tells_the_truth(worker_args, tmp_path):
    with servers.serving(servers.gunicorn(APP, tmp_path, "-w", "3", *worker_args)) as server:
        task_id = post(server, {"action": "start", "seconds": 60}).json()["task_id"]
        # Concurrent requests land on different workers (a sync worker takes one at a time).
        with ThreadPoolExecutor(6) as pool:
            workers: set[int] = set()
            for _ in range(10):  # the kernel decides which worker accepts; ask until two did
                sleeps = pool.map(
                    lambda _: post(server, {"action": "sleep", "seconds": 0.2}), range(6)
                )
                workers |= {response.json()["pid"] for response in sleeps}
                if len(workers) > 1:
                    break
            assert len(workers) > 1, "no request reached a second worker"
            statuses = list(pool.map(lambda _: timed_ping(server)[1], range(30)))
            counts = list(pool.map(lambda _: post(server, {"action": "info"}).json(), range(6)))
        assert statuses == ["HealthyBusy"] * 30
        assert [info["active_count"] for info in counts] == [1] * 6

        owner = _worker_running(server, task_id)
        os.kill(owner, signal.SIGKILL)
        killed_at = time.monotonic()
        while True:
            statuses = [timed_ping(server)[1] for _ in range(10)]
            if set(statuses) == {"Healthy"}:
                break
            assert time.monotonic() - killed_at < 5, f"still {statuses}"
            time.sleep(0.1)
        assert post(server, {"action": "info"}).json()["active_count"] == 0


def test_a_sixty_second_invocation_completes_under_plain_gunicorn(tmp_path):
    """`gunicorn wsgi:app` with the shipped config; only the bind is the test's."""
    env = {"SIMPLE_AGENT_PROCESS_SECONDS": "60"}
    argv_server = servers.gunicorn("wsgi:app", tmp_path, env=env)
    with servers.serving(argv_server) as server:
        result: dict = {}

        def call():
            result["response"] = requests.post(
                server.url + "/invocations", json={"action": "process"}, timeout=90
            )

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1)
        assert timed_ping(server)[1] == "HealthyBusy"
        caller.join(80)
        response = result["response"]
        assert response.status_code == 200
        assert response.json() == {"message": "Processing default_data", "status": "completed"}
        assert timed_ping(server)[1] == "Healthy"


# -- pieces, in-process ------------------------------------------------------


def test_limiter_refuses_past_its_limit_and_reports_saturation():
    limiter = InvocationLimiter(2)
    published = []
    limiter.publish = published.append
    assert limiter.try_acquire() and not limiter.saturated
    assert limiter.try_acquire() and limiter.saturated
    assert not limiter.try_acquire()
    limiter.release()
    assert not limiter.saturated and limiter.try_acquire()
    flips, count = limiter.busy.take()
    assert count == 3
    assert [limiter.busy.cause(flip) for flip in flips] == [
        "invocations saturated",
        "invocation slot freed",
        "invocations saturated",
    ]
    assert published == [True, False, True]
    with pytest.raises(ValueError):
        InvocationLimiter(0)


def test_boards_of_one_server_add_up_and_forget_a_closed_worker(tmp_path):
    one = WorkerBoard("test", jobs=lambda: [{"name": "a"}], directory=str(tmp_path))
    # A second board in the same process stands in for a second worker: same file,
    # another slot (the pid is what names a slot, so give it another one).
    two = WorkerBoard.__new__(WorkerBoard)
    two.__dict__.update(one.__dict__)
    two.pid = one.pid + 1_000_000
    two.slot = one.slot + 1
    two._offset = one._offset + 32
    one.publish_count(2)
    two.publish_count(3)
    two.publish_saturated(True)
    assert one.totals() == (5, True)
    two._stopped = threading.Event()
    two._dirty = threading.Event()
    two._thread = threading.Thread(target=lambda: None)
    two._thread.start()
    two._jobs_path = str(tmp_path / "none.json")
    two.close()
    assert one.totals() == (2, False)
    one.close()


def test_workers_agree_on_time_of_last_update(tmp_path):
    with servers.serving(servers.gunicorn(APP, tmp_path, "-w", "3")) as server:
        post(server, {"action": "start", "seconds": 1.5})
        time.sleep(0.2)
        busy = {
            requests.get(server.url + "/ping", headers=FRESH).json()["time_of_last_update"]
            for _ in range(20)
        }
        time.sleep(2)
        healthy = [requests.get(server.url + "/ping", headers=FRESH).json() for _ in range(20)]
    assert len(busy) == 1, busy
    assert {reply["status"] for reply in healthy} == {"Healthy"}
    assert len({reply["time_of_last_update"] for reply in healthy}) == 1
