"""The task registry: add_async_task, complete_async_task, get_async_task_info."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from agentcore_sync import BedrockAgentCoreApp, PingStatus


@pytest.fixture
def app() -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(configure_logging=False)


def warnings_about(caplog: pytest.LogCaptureFixture, task_id: Any) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and str(task_id) in record.getMessage()
    ]


def test_add_and_complete(app: BedrockAgentCoreApp) -> None:
    first = app.add_async_task("first")
    second = app.add_async_task("second", {"user": "u1"})
    assert isinstance(first, int) and isinstance(second, int) and first != second
    info = app.get_async_task_info()
    assert info["active_count"] == 2
    jobs = {job["name"]: job for job in info["running_jobs"]}
    assert set(jobs) == {"first", "second"}
    assert jobs["second"]["metadata"] == {"user": "u1"}
    for job in jobs.values():
        assert isinstance(job["duration"], float) and job["duration"] >= 0
    assert app.complete_async_task(first) is True
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    assert app.complete_async_task(second) is True
    assert app.get_async_task_info() == {"active_count": 0, "running_jobs": []}
    assert app.get_current_ping_status() is PingStatus.HEALTHY


def test_task_info_is_json_serializable(app: BedrockAgentCoreApp) -> None:
    import json

    app.add_async_task("job", {"nested": {"a": [1, 2]}})
    assert json.loads(json.dumps(app.get_async_task_info()))["active_count"] == 1


def test_complete_twice_returns_false_and_warns(
    app: BedrockAgentCoreApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    task_id = app.add_async_task("job")
    assert app.complete_async_task(task_id) is True
    assert not warnings_about(caplog, task_id)
    assert app.complete_async_task(task_id) is False
    assert len(warnings_about(caplog, task_id)) == 1


@pytest.mark.parametrize("unknown", [123456789, -1, 0, None, "not-an-id", 3.5])
def test_complete_unknown_id_returns_false_warns_and_never_raises(
    app: BedrockAgentCoreApp, caplog: pytest.LogCaptureFixture, unknown: Any
) -> None:
    caplog.set_level(logging.INFO)
    assert app.complete_async_task(unknown) is False
    assert len(warnings_about(caplog, unknown)) == 1


def test_seed_finally_pattern_is_safe(app: BedrockAgentCoreApp) -> None:
    """Explicit completion, then the safety net in ``finally``: no error, not busy."""
    task_id = app.add_async_task("my_task")
    try:
        assert app.complete_async_task(task_id) is True
    finally:
        assert app.complete_async_task(task_id) is False
    assert app.get_current_ping_status() is PingStatus.HEALTHY


def test_many_threads_adding_and_completing_at_once(app: BedrockAgentCoreApp) -> None:
    threads_count, per_thread = 16, 400
    barrier = threading.Barrier(threads_count)
    ids: list[list[int]] = [[] for _ in range(threads_count)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            mine = ids[index]
            for n in range(per_thread):
                mine.append(app.add_async_task(f"t{index}-{n}"))
                if n % 3 == 0:
                    # Keep some tasks open for a while so that completions interleave.
                    assert app.complete_async_task(mine[-1]) is True
            for task_id in mine[1::3] + mine[2::3]:
                assert app.complete_async_task(task_id) is True
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    every_id = [task_id for mine in ids for task_id in mine]
    assert len(every_id) == threads_count * per_thread
    assert len(set(every_id)) == len(every_id), "task ids are unique"
    assert app.get_async_task_info() == {"active_count": 0, "running_jobs": []}
    assert not app._active_tasks
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    assert app.test_client().get("/ping").json["status"] == "Healthy"


def test_concurrent_completion_of_one_id_succeeds_once(app: BedrockAgentCoreApp) -> None:
    for _ in range(50):
        task_id = app.add_async_task("contended")
        barrier = threading.Barrier(8)
        results: list[bool] = []

        def complete(
            task_id: int = task_id,
            barrier: threading.Barrier = barrier,
            results: list[bool] = results,
        ) -> None:
            barrier.wait()
            results.append(app.complete_async_task(task_id))

        threads = [threading.Thread(target=complete) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(results) == [False] * 7 + [True]
    assert app.get_current_ping_status() is PingStatus.HEALTHY


def test_an_id_belongs_to_the_app_that_issued_it() -> None:
    one = BedrockAgentCoreApp(configure_logging=False)
    two = BedrockAgentCoreApp(configure_logging=False)
    first = one.add_async_task("x")
    # An id of another app is unknown here.
    assert two.complete_async_task(first) is False
    assert one.complete_async_task(first) is True
