"""Result stores against real backends: memory, an SQLite file, a redis-server process,
and DynamoDB and S3 as moto's standalone server serves them over HTTP."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer
from service_process import free_port

from agentcore_sync.stores import (
    ResilientStore,
    ResultStore,
    open_store,
    redact_url,
)

pytestmark = pytest.mark.e2e

# The redis_server, redis_url and redis_server_factory fixtures.

REPO = Path(__file__).resolve().parents[1]
OWNER = "host-a:101"


def make_record(task_id: int, status: str = "queued", owner: str = OWNER, **extra: Any) -> dict:
    """A record shaped like the runtime's."""
    return {
        "task_id": task_id,
        "name": "report",
        "status": status,
        "result": None,
        "error": None,
        "created_at": 1_700_000_000.25,
        "started_at": None,
        "finished_at": None,
        "duration": None,
        "ping_status_after": None,
        "owner": owner,
        "pid": 101,
        **extra,
    }


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def store_log() -> Iterator[list[logging.LogRecord]]:
    """Records logged on "agentcore_sync.stores", whatever the logging setup elsewhere."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("agentcore_sync.stores")
    handler, old_level = Collect(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def messages(records: list[logging.LogRecord], level: int) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


# -- every backend ---------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis", "dynamodb", "s3"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., ResultStore]]:
    """``make(ttl=60.0)`` opens a store of the parametrized backend; closed afterwards."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    elif request.param in ("dynamodb", "s3"):
        url = request.getfixturevalue("aws_store_url")(request.param)
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/tasks.db"
    else:
        url = "memory://"
    stores: list[ResultStore] = []

    def make(ttl: float = 60.0) -> ResultStore:
        store = open_store(url, ttl=ttl)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def test_roundtrip_keeps_every_key(make_store: Callable[..., ResultStore]) -> None:
    store = make_store()
    record = make_record(
        7,
        status="succeeded",
        result={"items": [1, 2.5, "ü€", None, True], "nested": {"k": [{"deep": False}]}},
        error=None,
        started_at=1_700_000_001.5,
        finished_at=1_700_000_003.0,
        duration=1.5,
        ping_status_after="Healthy",
        metadata={"user": "u-1"},
        extra_key="kept",
    )
    store.put(record)
    got = store.get(7)
    assert got == record
    got["result"]["items"].append("mutated")
    assert store.get(7) == record, "get must return a fresh copy"


def test_put_upserts(make_store: Callable[..., ResultStore]) -> None:
    store = make_store()
    store.put(make_record(1, status="queued"))
    running = make_record(1, status="running", started_at=2.0)
    store.put(running)
    assert store.get(1) == running


def test_unknown_id_is_none(make_store: Callable[..., ResultStore]) -> None:
    store = make_store()
    store.put(make_record(1))
    assert store.get(2) is None


def test_records_expire_ttl_after_last_put(make_store: Callable[..., ResultStore]) -> None:
    store = make_store(ttl=0.5)
    store.put(make_record(1, status="running"))
    store.put(make_record(2, status="running"))
    time.sleep(0.3)
    store.put(make_record(2, status="running"))  # restarts 2's TTL
    time.sleep(0.3)  # 1 is 0.6 s old, 2 was put 0.3 s ago
    assert store.get(1) is None
    assert store.get(2) is not None
    assert [r["task_id"] for r in store.unfinished(OWNER)] == [2]
    time.sleep(0.35)
    assert store.get(2) is None
    assert store.unfinished(OWNER) == []


def test_unfinished_returns_queued_and_running_of_owner(
    make_store: Callable[..., ResultStore],
) -> None:
    store = make_store()
    store.put(make_record(2, status="running"))
    store.put(make_record(1, status="queued"))
    store.put(make_record(3, status="succeeded"))
    store.put(make_record(4, status="running", owner="host-b:202"))
    store.put(make_record(5, status="failed"))
    store.put(make_record(6, status="interrupted"))
    assert [r["task_id"] for r in store.unfinished(OWNER)] == [1, 2]
    assert store.unfinished(OWNER)[0] == make_record(1, status="queued")
    store.put(make_record(2, status="succeeded"))
    assert [r["task_id"] for r in store.unfinished(OWNER)] == [1]
    assert [r["task_id"] for r in store.unfinished("host-b:202")] == [4]
    assert store.unfinished("nobody") == []


def test_many_threads_put_and_get(make_store: Callable[..., ResultStore]) -> None:
    store = make_store()
    errors: list[BaseException] = []

    def work(base: int) -> None:
        try:
            for i in range(base, base + 50):
                store.put(make_record(i, status="running"))
                store.put(make_record(i, status="succeeded", result=i))
                assert store.get(i) == make_record(i, status="succeeded", result=i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(store.get(n * 1000 + 49)["result"] == n * 1000 + 49 for n in range(8))
    assert store.unfinished(OWNER) == []


# -- SQLite ------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from agentcore_sync.stores import open_store

    url, first, ready, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    store = open_store(url)  # both create the new file at once, then write at once
    for task_id in range(first, first + 500):
        store.put({"task_id": task_id, "status": "succeeded", "owner": "w", "pid": os.getpid()})
    store.close()
    """
)


def test_sqlite_two_processes_write_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared/tasks.db"
    go = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                url,
                str(first),
                str(tmp_path / f"ready{first}"),
                str(go),
            ],
            env=env,
            stderr=subprocess.PIPE,
        )
        for first in (0, 500)
    ]
    assert wait_until(lambda: all((tmp_path / f"ready{f}").exists() for f in (0, 500)), 20)
    go.touch()  # both write at once
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
    store = open_store(url)
    try:
        records = [store.get(task_id) for task_id in range(1000)]
    finally:
        store.close()
    assert all(r is not None and r["status"] == "succeeded" for r in records)
    assert len({r["pid"] for r in records if r}) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sqlite_store_works_in_a_forked_child(tmp_path: Path) -> None:
    """gunicorn --preload forks workers from a master that may have opened the store."""
    store = open_store(f"sqlite:///{tmp_path}/tasks.db")
    try:
        store.put(make_record(1))
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                store.put(make_record(2))
                code = 0 if store.get(1) == make_record(1) else 1
                store.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert store.get(2) == make_record(2)
    finally:
        store.close()


def test_sqlite_keeps_records_across_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tasks.db"
    store = open_store(url)
    store.put(make_record(1, status="running"))
    store.put(make_record(2, status="succeeded", result={"a": 1}))
    store.close()
    reopened = open_store(url)
    try:
        assert reopened.get(2) == make_record(2, status="succeeded", result={"a": 1})
        assert reopened.unfinished(OWNER) == [make_record(1, status="running")]
    finally:
        reopened.close()


def test_sqlite_directory_and_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "tasks.db"
    store = open_store(f"sqlite:///{path}")
    try:
        store.put(make_record(1))
        for directory in (tmp_path / "a", tmp_path / "a" / "b"):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        for suffix in ("", "-wal", "-shm"):
            file = Path(f"{path}{suffix}")
            assert file.exists(), file  # WAL mode: -wal and -shm exist while open
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        store.close()


def test_sqlite_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    open_store(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sqlite_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///data/rel.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")  # sqlite:////tmp/...
    try:
        assert (tmp_path / "data" / "rel.db").exists()
        assert (tmp_path / "abs.db").exists()
        assert relative.url == f"sqlite:///{tmp_path}/data/rel.db"
        assert absolute.url.startswith("sqlite:////")
    finally:
        relative.close()
        absolute.close()


@pytest.mark.parametrize("url", ["sqlite://tasks.db", "sqlite:///", "sqlite:///:memory:"])
def test_sqlite_malformed_urls(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite store URL"):
        open_store(url)


# -- Redis -------------------------------------------------------------------------------


def test_redis_two_store_objects_share_records(redis_url: str) -> None:
    first, second = open_store(redis_url), open_store(redis_url)
    try:
        first.put(make_record(1, status="running"))
        second.put(make_record(2, status="queued"))
        assert second.get(1) == make_record(1, status="running")
        assert first.get(2) == make_record(2, status="queued")
        assert [r["task_id"] for r in second.unfinished(OWNER)] == [1, 2]
        second.put(make_record(1, status="succeeded"))
        assert [r["task_id"] for r in first.unfinished(OWNER)] == [2]
    finally:
        first.close()
        second.close()


def test_redis_keys_are_namespaced_with_an_owner_index(redis_url: str) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    store = open_store(redis_url, ttl=30)
    try:
        store.put(make_record(1, status="running"))
        store.put(make_record(2, status="succeeded"))
        assert sorted(raw.keys()) == [
            b"agentcore_sync:task:1",
            b"agentcore_sync:task:2",
            b"agentcore_sync:unfinished:" + OWNER.encode(),
        ]
        assert 0 < raw.pttl("agentcore_sync:task:1") <= 30_000
        assert raw.smembers(f"agentcore_sync:unfinished:{OWNER}") == {b"1"}
        store.put(make_record(1, status="failed"))
        assert raw.smembers(f"agentcore_sync:unfinished:{OWNER}") == set()
    finally:
        store.close()
        raw.close()


def test_redis_index_forgets_expired_records(redis_url: str) -> None:
    import redis

    raw = redis.Redis.from_url(redis_url)
    store = open_store(redis_url, ttl=30)
    try:
        store.put(make_record(1, status="running"))
        store.put(make_record(2, status="running"))
        raw.delete("agentcore_sync:task:1")  # as if it had expired
        assert [r["task_id"] for r in store.unfinished(OWNER)] == [2]
        assert raw.smembers(f"agentcore_sync:unfinished:{OWNER}") == {b"2"}
    finally:
        store.close()
        raw.close()


def test_redis_down_fails_fast() -> None:
    import redis

    store = open_store(f"redis://127.0.0.1:{free_port()}/0")
    try:
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            store.put(make_record(1))
        assert time.monotonic() - started < 2.5
    finally:
        store.close()


def test_redis_without_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what an absent package looks like
    with pytest.raises(ImportError, match=r"agentcore_sync\[redis\]"):
        open_store("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw-123@127.0.0.1:notaport/0",
        "redis://:pw-123@/0",
        "redis://:pw-123@127.0.0.1:6379/zero",
        "redis://:pw-123@127.0.0.1:6379/0?socket_timeout=soon",
    ],
)
def test_redis_malformed_urls(url: str) -> None:
    with pytest.raises(ValueError, match="malformed Redis store URL") as caught:
        open_store(url)
    assert "pw-123" not in str(caught.value)


def test_redis_store_url_is_redacted() -> None:
    store = open_store("redis://:pw-123@127.0.0.1:6379/0")
    try:
        assert store.url == "redis://:***@127.0.0.1:6379/0"
        assert "pw-123" not in repr(store)
    finally:
        store.close()


# -- ResilientStore ----------------------------------------------------------------------


def test_resilient_rides_out_a_redis_outage(
    redis_server: RedisServer, store_log: list[logging.LogRecord]
) -> None:
    store = ResilientStore(open_store(redis_server.url), retry_interval=0.1)
    try:
        store.put(make_record(1, status="succeeded"))
        assert store.flush()
        redis_server.stop()
        for task_id in (2, 3, 4):
            store.put(make_record(task_id, status="running"))  # must not raise
        store.put(make_record(4, status="succeeded", result="done"))
        assert store.pending_count() == 3
        assert store.get(4) == make_record(4, status="succeeded", result="done")
        assert store.get(1) is None  # stored before the outage, unreadable during it
        assert [r["task_id"] for r in store.unfinished(OWNER)] == [2, 3]
        time.sleep(0.3)  # a few failed retries
        errors = messages(store_log, logging.ERROR)
        outage = [m for m in errors if "is failing" in m]
        assert len(outage) == 1, errors
        assert redis_server.url in outage[0]
        assert "ConnectionError" in outage[0]

        redis_server.start()
        assert wait_until(lambda: store.pending_count() == 0), "pending records not flushed"
        fresh = open_store(redis_server.url)
        try:
            assert fresh.get(4) == make_record(4, status="succeeded", result="done")
            assert [r["task_id"] for r in fresh.unfinished(OWNER)] == [2, 3]
        finally:
            fresh.close()
        recovered = [m for m in messages(store_log, logging.INFO) if "answering again" in m]
        assert len(recovered) == 1
        assert "wrote 3 record(s)" in recovered[0]
        assert len([m for m in messages(store_log, logging.ERROR) if "is failing" in m]) == 1
    finally:
        store.close()


def test_resilient_logs_never_show_the_password(
    redis_server_factory: Callable[..., RedisServer], store_log: list[logging.LogRecord]
) -> None:
    password = "s3cret-Pw-42"
    server = redis_server_factory(password=password)
    wrong = f"redis://:not-{password}@127.0.0.1:{server.port}/0"
    for url in (server.url, wrong):
        store = ResilientStore(open_store(url), retry_interval=0.1)
        try:
            store.put(make_record(1))
            if url == server.url:
                assert store.flush()
                server.stop()
                store.put(make_record(2))
            assert store.pending_count() >= 1
            assert store.get(99) is None  # a failed read is logged too
        finally:
            store.close(timeout=0.5)
    logged = [r.getMessage() for r in store_log]
    assert any("is failing" in m for m in logged)
    assert all(password not in m for m in logged), logged
    assert any(":***@127.0.0.1" in m for m in logged)


def test_resilient_keeps_each_tasks_latest_record_through_an_outage(
    redis_server: RedisServer,
) -> None:
    """Threads put successive versions of their task while Redis goes down and comes
    back: what ends in Redis is each task's last version, never an older one."""
    store = ResilientStore(open_store(redis_server.url), retry_interval=0.05)
    versions = 40

    def work(task_id: int) -> None:
        for version in range(versions):
            store.put(make_record(task_id, status="running", result=version))
            if version == versions // 2 and task_id == 0:
                redis_server.start()
            time.sleep(0.002)

    try:
        redis_server.stop()
        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert wait_until(lambda: store.pending_count() == 0)
        fresh = open_store(redis_server.url)
        try:
            assert [fresh.get(t)["result"] for t in range(6)] == [versions - 1] * 6
        finally:
            fresh.close()
    finally:
        store.close()


def test_resilient_close_writes_pending_records(redis_server: RedisServer) -> None:
    store = ResilientStore(open_store(redis_server.url), retry_interval=30)
    redis_server.stop()
    store.put(make_record(1, status="succeeded"))
    assert store.pending_count() == 1
    redis_server.start()
    store.close()  # the retry thread would wait 30 s; close writes at once
    fresh = open_store(redis_server.url)
    try:
        assert fresh.get(1) == make_record(1, status="succeeded")
    finally:
        fresh.close()


def test_resilient_drops_oldest_over_the_cap_and_says_so(
    store_log: list[logging.LogRecord],
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    store = ResilientStore(open_store(url), max_pending=3)
    try:
        for task_id in range(1, 6):
            store.put(make_record(task_id))
        assert store.pending_count() == 3
        assert store.get(1) is None and store.get(2) is None
        assert store.get(5) == make_record(5)
        first_report = [m for m in messages(store_log, logging.ERROR) if "dropped" in m]
        assert first_report and "1 unwritten record(s) dropped" in first_report[0]
    finally:
        store.close(timeout=0.5)
    closing = [m for m in messages(store_log, logging.ERROR) if "closed with" in m]
    assert closing == [
        f"result store {url} closed with 3 record(s) never written, now lost "
        "(and 1 dropped earlier without a log line)"
    ]


def test_resilient_rate_limits_read_errors(store_log: list[logging.LogRecord]) -> None:
    store = ResilientStore(open_store(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        for task_id in range(5):
            assert store.get(task_id) is None
        assert store.unfinished(OWNER) == []
        reads = [m for m in messages(store_log, logging.ERROR) if "get failed" in m]
        assert len(reads) == 1
    finally:
        store.close(timeout=0.5)


def test_resilient_healthy_path_writes_behind() -> None:
    inner = open_store("memory://")
    store = ResilientStore(inner)
    store.put(make_record(1, status="running"))
    assert store.flush()
    assert store.pending_count() == 0
    assert inner.get(1) == make_record(1, status="running")
    assert store.get(1) == make_record(1, status="running")
    store.close()


def test_resilient_stores_unserializable_values_as_text(
    store_log: list[logging.LogRecord],
) -> None:
    inner = open_store("memory://")
    store = ResilientStore(inner)
    store.put(make_record(1, status="succeeded", result={"value": {1, 2}}))
    store.put({"status": "succeeded"})  # no task_id: logged, ignored
    assert store.flush()
    assert inner.get(1)["result"] == {"value": "{1, 2}"}
    errors = messages(store_log, logging.ERROR)
    assert any("not JSON-serializable" in m for m in errors)
    assert any("without an int task_id" in m for m in errors)
    store.close()


# -- open_store and redact_url -------------------------------------------------------------


@pytest.mark.parametrize("url", ["mysql://h/db", "file:///tmp/x", "tasks.db", "", "memory://x"])
def test_open_store_rejects_unknown_or_malformed(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_open_store_unknown_scheme_message() -> None:
    with pytest.raises(ValueError, match=r"unknown result store scheme 'mysql'.*sqlite:///"):
        open_store("mysql://user:pw-9@h/db")


def test_open_store_rejects_bad_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        open_store("memory://", ttl=0)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:secret@h:6379/0", "redis://user:***@h:6379/0"),
        ("rediss://token@h:6380", "rediss://***@h:6380"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://h/0?password=secret&db=1", "redis://h/0?password=***&db=1"),
        ("sqlite:////var/lib/tasks.db", "sqlite:////var/lib/tasks.db"),
        ("sqlite:///tasks.db", "sqlite:///tasks.db"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_url_of_unparseable_url_hides_the_password() -> None:
    redacted = redact_url("redis://:secret@[::1:6379/0")
    assert redacted == "redis://:***@[::1:6379/0"


def test_resilient_put_never_waits_on_a_store_that_hangs() -> None:
    """A Redis that accepts connections but never answers costs the putter nothing."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        store = ResilientStore(open_store(url), retry_interval=0.1)
        try:
            started = time.monotonic()
            for task_id in range(20):
                store.put(make_record(task_id, status="running"))
            assert time.monotonic() - started < 0.5  # each write would wait 2 s
            assert store.get(3) == make_record(3, status="running")
        finally:
            store.close(timeout=0.5)
