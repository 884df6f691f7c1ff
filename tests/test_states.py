"""Task states and record statuses as types, and the core's process-wide hooks.

States are ``StrEnum``s: they must still equal, hash and serialize as the strings
that records read back from a store (or another worker's published tasks) hold.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from agentcore_sync.core import cluster
from agentcore_sync.core.cluster import WorkerBoard
from agentcore_sync.core.registry import TaskRegistry
from agentcore_sync.core.runtime import Runtime
from agentcore_sync.models import RecordStatus, TaskState
from agentcore_sync.stores import UNFINISHED_STATUSES, is_unfinished, open_store
from agentcore_sync.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.e2e


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    runtime = Runtime(result_store="memory://", server_id="states-test")
    yield runtime
    runtime.shutdown(grace=5)


# -- states and statuses -------------------------------------------------------------


def test_states_are_their_strings() -> None:
    assert [state.value for state in TaskState] == ["queued", "running"]
    assert [status.value for status in RecordStatus] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "interrupted",
    ]
    for state in (*TaskState, *RecordStatus):
        assert state == state.value
        assert hash(state) == hash(state.value)
        assert str(state) == f"{state}" == state.value
        assert json.dumps({"s": state}) == json.dumps({"s": state.value})
        assert json.dumps({"s": state}, indent=1) == json.dumps({"s": state.value}, indent=1)


def test_unfinished_statuses_match_records_decoded_from_json() -> None:
    assert set(UNFINISHED_STATUSES) == {"queued", "running"}
    for status, unfinished in (("queued", True), ("running", True), ("succeeded", False)):
        record = json.loads(json.dumps({"task_id": 1, "owner": "me", "status": status}))
        assert type(record["status"]) is str
        assert (record["status"] in UNFINISHED_STATUSES) is unfinished
        assert is_unfinished(record, "me") is unfinished


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_stores_find_records_put_with_typed_statuses(scheme: str, tmp_path: Any) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'records.db'}"
    with open_store(url) as store:
        for task_id, status in enumerate(RecordStatus, start=1):
            store.put({"task_id": task_id, "owner": "me", "status": status})
        unfinished = store.unfinished("me")
        assert [record["status"] for record in unfinished] == ["queued", "running"]
        assert all(type(record["status"]) is str for record in unfinished)
        assert store.get(3) == {"task_id": 3, "owner": "me", "status": "succeeded"}


def test_task_info_and_records_serialize_to_the_same_json(runtime: Runtime) -> None:
    release = threading.Event()
    handle = runtime.submit(release.wait, 10)
    try:
        jobs = runtime.get_async_task_info()["running_jobs"]
        assert [job["state"] for job in jobs] in (["queued"], ["running"])
        assert json.loads(json.dumps(jobs)) == jobs
        record = runtime.get_task_result(handle.task_id)
        assert record is not None
        assert record["status"] in ("queued", "running")
        assert json.loads(json.dumps(record)) == record
    finally:
        release.set()
    assert handle.result(timeout=10) is True
    record = runtime.get_task_result(handle.task_id)
    assert record is not None
    assert record["status"] == RecordStatus.SUCCEEDED
    assert '"status": "succeeded"' in json.dumps(record)


def test_registry_states() -> None:
    registry = TaskRegistry()
    queued = registry.add("later", state=TaskState.QUEUED, max_duration=0.0)
    running = registry.add("now", max_duration=0.0)
    states = {job["task_id"]: job["state"] for job in registry.jobs()}
    assert states == {queued: "queued", running: "running"}
    # Only a running task can outlive its maximum duration.
    assert [entry.task_id for entry in registry.flag_overdue()] == [running]
    assert registry.set_state(queued, TaskState.RUNNING)
    assert registry.jobs()[0]["state"] == "running"
    registry.complete(queued)
    registry.complete(running)
    assert not registry.set_state(queued, TaskState.RUNNING)


def test_interrupted_records_of_a_dead_process_are_recovered(runtime: Runtime) -> None:
    store = runtime.result_store()
    # Opening the store started recovery; this record comes after it.
    assert runtime.executor._recovered.wait(10)
    # A process id that is not alive (pid 0 is never a task's process).
    record = {"task_id": 7, "owner": "states-test", "status": "running", "process": "0:0"}
    store.put(record)
    assert runtime.executor.recover() == 1
    recovered = runtime.get_task_result(7)
    assert recovered is not None
    assert recovered["status"] == "interrupted"


# -- process-wide hooks --------------------------------------------------------------


def collected(make: Any) -> bool:
    """Whether what ``make()`` returns is freed once dropped (nothing process-wide holds it)."""
    ref = weakref.ref(make())
    gc.collect()
    return ref() is None


def test_a_registry_is_not_kept_alive_by_its_fork_hook() -> None:
    assert collected(TaskRegistry)


def test_an_sqlite_store_is_not_kept_alive_by_its_fork_hook(tmp_path: Any) -> None:
    def make() -> SQLiteStore:
        store = SQLiteStore(str(tmp_path / "records.db"))
        store.close()
        return store

    assert collected(make)


def in_child(work: Any) -> str:
    """Run ``work()`` in a forked child; its return value, as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, str(work()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as out:
        text = out.read()
    os.waitpid(pid, 0)
    return text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_issues_new_ids_and_opens_its_own_connection(tmp_path: Any) -> None:
    registry = TaskRegistry()
    store = SQLiteStore(str(tmp_path / "records.db"))
    store.put({"task_id": 1, "status": "running"})
    parent_connection = store._conn

    def child() -> str:
        task_id = registry.add("child")
        store.put({"task_id": 2, "status": RecordStatus.SUCCEEDED})
        return f"{task_id} {store._conn is not parent_connection}"

    child_id, own_connection = in_child(child).split()
    assert own_connection == "True"
    parent_id = registry.add("parent")
    assert int(child_id) != parent_id
    assert store.get(2) == {"task_id": 2, "status": "succeeded"}
    store.close()


# -- the board's close -------------------------------------------------------------


def slot_of(board: WorkerBoard) -> tuple[int, int, int]:
    pid, active, saturated, _beat = cluster._SLOT.unpack_from(board._map, board._offset)
    return pid, active, saturated


def test_closing_the_board_is_idempotent_and_final(tmp_path: Any) -> None:
    board = WorkerBoard("states", jobs=lambda: [{"name": "x"}], directory=str(tmp_path))
    board.publish_count(2)
    board.publish_saturated(True)
    assert slot_of(board) == (os.getpid(), 2, 1)
    board.close()
    board.close()
    assert slot_of(board) == (0, 0, 0)
    assert not board._thread.is_alive()
    assert not os.path.exists(board._jobs_path)
    # A registry or limiter still wired to the board does not bring the slot back.
    board.publish_count(3)
    board.publish_saturated(True)
    board._write_slot()
    board._write_jobs()
    assert slot_of(board) == (0, 0, 0)
    assert not os.path.exists(board._jobs_path)
    assert board.totals() == (0, False)


def test_closing_the_board_while_it_is_written(tmp_path: Any) -> None:
    board = WorkerBoard("busy", jobs=lambda: [{"name": "x"}], directory=str(tmp_path))
    stop = threading.Event()

    def publish() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            board.publish_count(count % 5)
            board.publish_saturated(bool(count % 2))
            board._write_jobs()

    writers = [threading.Thread(target=publish) for _ in range(4)]
    for writer in writers:
        writer.start()
    board.close()
    stop.set()
    for writer in writers:
        writer.join(10)
    assert slot_of(board) == (0, 0, 0)
    assert not os.path.exists(board._jobs_path)
