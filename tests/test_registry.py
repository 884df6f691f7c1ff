"""The task registry: add_async_task, complete_async_task, get_async_task_info."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from typing import Any

import pytest

from agentcore_sync import BedrockAgentCoreApp, PingStatus
from agentcore_sync.core.busy import BusyFlag
from agentcore_sync.core.registry import TaskRegistry

pytestmark = pytest.mark.unit


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


def test_the_busy_flag_agrees_with_the_tasks_whenever_the_threads_stop(
    app: BedrockAgentCoreApp,
) -> None:
    """Adds and completes take no lock while the set stays non-empty: races with the
    flips of emptiness must still leave the flag (and the status) right."""
    registry = app.runtime.registry
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch at almost every bytecode
    try:
        for round_ in range(40):
            barrier = threading.Barrier(6)

            def work(seed: int, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                for n in range(60):
                    task_id = app.add_async_task(f"r{seed}-{n}")
                    if (seed + n) % 4:
                        app.complete_async_task(task_id)
                    else:
                        app.complete_async_task(app.add_async_task("inner"))
                        app.complete_async_task(task_id)

            threads = [threading.Thread(target=work, args=(round_ * 6 + i,)) for i in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert len(registry) == 0 and registry.busy.busy is False, round_
            assert app.get_current_ping_status() is PingStatus.HEALTHY
            kept = app.add_async_task("kept")
            assert registry.busy.busy is True
            assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
            app.complete_async_task(kept)
    finally:
        sys.setswitchinterval(interval)


def test_an_add_racing_the_flip_to_idle_leaves_the_flag_busy() -> None:
    """The race _settle_busy closes, made to happen: a complete() empties the set and
    settles; between its look at the set and its flip, another add() inserts a task
    and, seeing busy still true, does not settle."""
    registry = TaskRegistry()
    racer: list[int] = []

    class RacedFlag(BusyFlag):
        __slots__ = ()

        def flip(self, busy: bool, at: float, detail: str = "") -> None:
            if not busy and not racer:
                racer.append(registry.add("racer"))  # reads busy: still true
            super().flip(busy, at, detail)

    registry.busy = RacedFlag(registry._lock, "started", "finished", "active")
    first = registry.add("first")
    assert registry.busy.busy is True
    registry.complete(first)
    assert len(registry) == 1 and registry.busy.busy is True
    flips, count = registry.busy.take()
    assert [flip[0] for flip in flips] == [True, False, True] and count == 3
    registry.complete(racer[0])
    assert registry.busy.busy is False


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


# -- task ids ----------------------------------------------------------------------


def test_task_ids_tell_nothing_of_their_neighbours() -> None:
    """A client that knows its own task's id cannot reach the next or the last one."""
    registry = TaskRegistry()
    ids = [registry.add(f"t{i}") for i in range(20_000)]
    for task_id in ids:
        registry.complete(task_id)
    assert len(set(ids)) == len(ids)
    assert all(0 < task_id < 2**53 for task_id in ids), "exact as JavaScript numbers"
    steps = {b - a for a, b in itertools.pairwise(ids)}
    assert len(steps) > 19_000, "no common step from one id to the next"
    # Consecutive ids differ by 1; random ones come within 2**30 of the one before
    # about once in 4,000,000 pairs.
    near = sum(abs(b - a) < 2**30 for a, b in itertools.pairwise(ids))
    assert near <= 1, f"{near} ids within 2**30 of the one before"
    # Spread over the whole range: the top bit is set about half the time.
    high = sum(task_id >= 2**52 for task_id in ids)
    assert 9_000 < high < 11_000, high


def test_task_ids_are_unique_across_threads_and_registries() -> None:
    registries = [TaskRegistry(), TaskRegistry()]
    seen: list[int] = []
    lock = threading.Lock()

    def add(registry: TaskRegistry) -> None:
        mine = [registry.add("t") for _ in range(5_000)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=add, args=(r,)) for r in registries for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == len(set(seen)) == 40_000


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    import os

    registry = TaskRegistry()
    registry.complete(registry.add("warm"))  # the pool is filled before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        ids = [registry.add("child") for _ in range(50)]
        os.write(write, ",".join(map(str, ids)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = {int(text) for text in pipe.read().split(",")}
    os.waitpid(pid, 0)
    parent = {registry.add("parent") for _ in range(50)}
    assert len(child) == 50 and not child & parent
