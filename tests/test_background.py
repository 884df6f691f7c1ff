"""Background work in-process: TaskHandle, queueing, cancellation, limits, records."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import io
import json
import logging
import random
import threading
import time
from collections import Counter

import pytest

from agentcore_sync import BedrockAgentCoreApp, PingStatus
from agentcore_sync.core.executor import ShuttingDown
from agentcore_sync.core.loop import ContainedExit
from agentcore_sync.observability.logging import JSONFormatter
from agentcore_sync.stores import open_store

pytestmark = pytest.mark.unit

TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}


@pytest.fixture
def app():
    agent = BedrockAgentCoreApp(result_store="memory://", task_threads=4)
    yield agent
    agent.shutdown(grace=5)


def wait_record(app, task_id, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = app.get_task_result(task_id)
        if record is not None and record["status"] in TERMINAL:
            return record
        time.sleep(0.01)
    raise AssertionError(f"no terminal record for {task_id}: {app.get_task_result(task_id)}")


def test_start_registers_before_returning_and_keeps_the_function_plain(app):
    gate = threading.Event()

    @app.async_task
    def work(x):
        """Doc."""
        gate.wait(5)
        return x + 1

    assert work(1) == 2  # still a plain function when called directly
    assert work.__doc__ == "Doc." and work.__name__ == "work"
    handle = work.start(41)
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    assert handle.task_id in [job["task_id"] for job in app.get_async_task_info()["running_jobs"]]
    assert not handle.done()
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.01)
    gate.set()
    assert handle.result(timeout=5) == 42
    record = wait_record(app, handle.task_id)
    assert record["status"] == "succeeded" and record["result"] == 42
    assert record["ping_status_after"] == "Healthy"
    assert app.get_current_ping_status() is PingStatus.HEALTHY


def test_submit_runs_any_callable_and_coroutines_on_the_loop(app):
    loop_threads = []

    async def coro(x):
        loop_threads.append(threading.current_thread().name)
        await asyncio.sleep(0.01)
        return x * 2

    def gen(n):
        yield from range(n)

    async def agen(n):
        for i in range(n):
            yield i

    assert app.submit(coro, 21).result(5) == 42
    assert app.submit(gen, 3).result(5) == [0, 1, 2]
    assert app.submit(agen, 2).result(5) == [0, 1]
    assert app.submit(lambda: "plain").result(5) == "plain"
    assert loop_threads == ["agentcore-loop"]
    assert app.submit(coro(1)).result(5) == 2  # a coroutine object works too


def test_queued_tasks_count_as_active_with_state_queued():
    app = BedrockAgentCoreApp(result_store="memory://", task_threads=1)
    gate = threading.Event()
    handles = [app.submit(gate.wait, 5) for _ in range(3)]
    time.sleep(0.05)
    states = Counter(job["state"] for job in app.get_async_task_info()["running_jobs"])
    assert states == {"running": 1, "queued": 2}
    assert app.get_task_result(handles[2].task_id)["status"] == "queued"
    gate.set()
    for handle in handles:
        assert handle.result(5) is True
    assert app.get_async_task_info()["active_count"] == 0
    app.shutdown(grace=1)


def test_cancel_queued_running_thread_and_coroutine():
    app = BedrockAgentCoreApp(result_store="memory://", task_threads=1)
    gate = threading.Event()
    running = app.submit(gate.wait, 5)
    queued = app.submit(gate.wait, 5)
    time.sleep(0.05)
    assert queued.cancel() is True
    assert queued.cancel() is True  # still cancelled, recorded once
    assert queued.done() and not running.done()
    assert running.cancel() is False  # a running thread cannot be stopped
    assert wait_record(app, queued.task_id)["status"] == "cancelled"
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(1)

    async def forever():
        await asyncio.sleep(60)

    coro = app.submit(forever)
    time.sleep(0.05)
    assert coro.cancel() is True
    record = wait_record(app, coro.task_id)
    assert record["status"] == "cancelled"
    gate.set()
    assert wait_record(app, running.task_id)["status"] == "succeeded"
    assert len(app._active_tasks) == 0
    app.shutdown(grace=1)


def test_failure_is_raised_by_result_and_recorded(app):
    def fail():
        raise KeyError("missing")

    handle = app.submit(fail)
    with pytest.raises(KeyError):
        handle.result(5)
    record = wait_record(app, handle.task_id)
    assert record["status"] == "failed"
    assert "KeyError" in record["error"] and "missing" in record["error"]
    assert record["result"] is None


def test_coroutine_past_its_maximum_duration_is_cancelled():
    app = BedrockAgentCoreApp(result_store="memory://")

    @app.async_task(max_duration=0.2)
    async def slow():
        await asyncio.sleep(30)

    handle = slow.start()
    record = wait_record(app, handle.task_id)
    assert record["status"] == "cancelled"
    assert "maximum duration" in record["error"]
    with pytest.raises(concurrent.futures.CancelledError):
        handle.result(1)
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    app.shutdown(grace=1)


def test_coroutines_are_cancelled_each_at_its_own_maximum_duration():
    app = BedrockAgentCoreApp(result_store="memory://")

    @app.async_task(max_duration=0.6)
    async def slow():
        await asyncio.sleep(30)

    @app.async_task(max_duration=0.2)
    async def quick():
        await asyncio.sleep(30)

    @app.async_task(max_duration=0.2)
    async def brief():
        await asyncio.sleep(0.05)
        return "in time"

    handles = {"slow": slow.start(), "quick": quick.start(), "brief": brief.start()}
    records = {name: wait_record(app, handle.task_id) for name, handle in handles.items()}
    assert records["brief"]["status"] == "succeeded" and records["brief"]["result"] == "in time"
    assert [records[name]["status"] for name in ("slow", "quick")] == ["cancelled"] * 2
    assert 0.2 <= records["quick"]["duration"] < records["slow"]["duration"]
    assert records["slow"]["duration"] >= 0.6
    app.shutdown(grace=1)


def test_a_coroutine_past_its_maximum_duration_is_cancelled_once():
    app = BedrockAgentCoreApp(result_store="memory://")
    cancels = []

    @app.async_task(max_duration=0.1)
    async def stubborn():
        for _ in range(3):
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                cancels.append(time.monotonic())
        return "outlived it"

    assert stubborn.start().result(5) == "outlived it"
    assert len(cancels) == 1
    app.shutdown(grace=1)


def test_thread_past_its_maximum_duration_is_flagged_overdue_and_logged(caplog):
    app = BedrockAgentCoreApp(result_store="memory://", max_task_duration=0.1)
    gate = threading.Event()
    handle = app.submit(gate.wait, 5)
    with caplog.at_level(logging.WARNING, logger="agentcore_sync"):
        time.sleep(1.5)  # past the limit and one watchdog round
    (job,) = app.get_async_task_info()["running_jobs"]
    assert job["overdue"] is True
    assert any("overdue" in r.getMessage() for r in caplog.records)
    gate.set()
    assert wait_record(app, handle.task_id)["status"] == "succeeded"
    app.shutdown(grace=1)


def test_every_thread_waiting_on_a_handle_gets_the_outcome(app):
    gate = threading.Event()

    async def when_open(value):
        while not gate.is_set():
            await asyncio.sleep(0.005)
        return value

    handle = app.submit(when_open, 7)
    results = []
    waiters = [threading.Thread(target=lambda: results.append(handle.result(5))) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.05)
    assert not handle.done() and results == []
    gate.set()
    for waiter in waiters:
        waiter.join(5)
    assert results == [7, 7, 7, 7] and handle.done()
    assert repr(handle) == f"<TaskHandle {handle.task_id} done>"


def test_a_coroutine_cancelled_before_the_loop_starts_it_never_runs(app):
    ran = []

    async def work():
        ran.append(True)

    busy = threading.Event()
    app.runtime.loop.loop.call_soon_threadsafe(busy.wait, 5)  # the loop starts nothing meanwhile
    coroutine = work()
    handles = [app.submit(work), app.submit(coroutine)]
    assert all(handle.cancel() for handle in handles)
    busy.set()
    for handle in handles:
        assert wait_record(app, handle.task_id)["status"] == "cancelled"
        with pytest.raises(concurrent.futures.CancelledError):
            handle.result(1)
    assert app.submit(asyncio.sleep, 0, "after").result(5) == "after"
    assert ran == []
    # Closed, so not reported as "never awaited" when collected.
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


def test_a_coroutine_raising_system_exit_fails_and_the_loop_goes_on(app):
    async def leave():
        raise SystemExit(3)

    handle = app.submit(leave)
    with pytest.raises(ContainedExit, match="SystemExit: 3"):
        handle.result(5)
    assert wait_record(app, handle.task_id)["error"] == "SystemExit: 3"
    assert app.submit(asyncio.sleep, 0, "still serving").result(5) == "still serving"


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_results_that_json_cannot_encode_use_the_response_fallbacks(app):
    assert wait_record(app, app.submit(lambda: Point(1, 2)).task_id)["result"] == {"x": 1, "y": 2}
    assert wait_record(app, app.submit(lambda: {1, 2}).task_id)["result"] in ([1, 2], [2, 1])
    assert wait_record(app, app.submit(object).task_id)["result"].startswith("<object")


def test_request_and_session_ids_follow_the_task_into_records_and_logs(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    task_log = logging.getLogger("test.task")
    task_log.addHandler(handler)
    task_log.setLevel(logging.INFO)

    @app.async_task
    def logged():
        task_log.info("inside the task")

    @app.entrypoint
    def main(payload):
        return {"task_id": logged.start().task_id}

    headers = {
        "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "session-1",
        "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id": "request-1",
    }
    try:
        task_id = app.test_client().post("/invocations", json={}, headers=headers).json["task_id"]
        record = wait_record(app, task_id)
    finally:
        task_log.removeHandler(handler)
    assert (record["request_id"], record["session_id"]) == ("request-1", "session-1")
    line = json.loads(stream.getvalue().splitlines()[0])
    assert (line["requestId"], line["sessionId"]) == ("request-1", "session-1")


def test_shutdown_stops_new_work_waits_then_records_interrupted(tmp_path):
    url = f"sqlite:///{tmp_path / 'results.db'}"
    app = BedrockAgentCoreApp(result_store=url)
    quick = app.submit(time.sleep, 0.2)
    stuck = app.submit(threading.Event().wait, 30)
    started = time.monotonic()
    app.shutdown(grace=0.5)
    assert 0.4 < time.monotonic() - started < 5
    with pytest.raises(ShuttingDown):
        app.submit(print)
    assert len(app._active_tasks) == 0
    store = open_store(url)
    try:
        assert store.get(quick.task_id)["status"] == "succeeded"
        stuck_record = store.get(stuck.task_id)
    finally:
        store.close()
    assert stuck_record["status"] == "interrupted"
    assert stuck_record["ping_status_after"] == "Healthy"


def test_many_threads_starting_completing_and_polling(app):
    """At the end the registry is empty and every task has exactly one terminal record."""
    terminal_puts: Counter[int] = Counter()
    store = app.runtime.result_store()
    inner_put = store.inner.put

    def counting_put(record):
        if record["status"] in TERMINAL:
            terminal_puts[record["task_id"]] += 1
        inner_put(record)

    store.inner.put = counting_put

    async def coro(i):
        await asyncio.sleep(random.random() / 100)
        return i

    def plain(i):
        if i % 7 == 0:
            raise ValueError(i)
        time.sleep(random.random() / 200)
        return i

    handles = []
    handles_lock = threading.Lock()

    def client(n):
        for i in range(50):
            handle = app.submit(coro if i % 2 else plain, n * 100 + i)
            if i % 10 == 3:
                handle.cancel()
            manual = app.add_async_task("manual")
            app.get_task_result(handle.task_id)
            app.get_async_task_info()
            assert app.complete_async_task(manual) is True
            assert app.complete_async_task(manual) is False
            with handles_lock:
                handles.append(handle)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = {handle.task_id: wait_record(app, handle.task_id) for handle in handles}
    assert len(records) == 16 * 50
    deadline = time.monotonic() + 5
    while store.pending_count() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(count == 1 for count in terminal_puts.values()), terminal_puts.most_common(3)
    assert set(terminal_puts) == set(records)
    assert len(app._active_tasks) == 0
    assert app.get_current_ping_status() is PingStatus.HEALTHY
