"""The DynamoDB and S3 result stores against moto's standalone server, over HTTP.

The store contract itself (round trip, upsert, TTL, unfinished, many threads) runs
for them in ``test_stores.py``. Here: what only they promise (a terminal record is
final under racing writers, large results through S3), ``store init``, and real
servers sharing a table or a bucket, restarting, and riding out an outage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import servers
from moto_server import MotoServer
from test_background_servers import make_server, record, start, wait_terminal
from test_stores import make_record

from agentcore_sync.stores import open_store
from agentcore_sync.stores.dynamodb import MAX_INLINE

pytestmark = pytest.mark.e2e

KINDS = ["dynamodb", "s3", "dynamodb+overflow"]
TERMINAL = ["succeeded", "failed", "cancelled", "interrupted"]
MEGABYTE = "x" * 1_000_000


@pytest.mark.parametrize("kind", KINDS)
def test_exactly_one_terminal_record_when_sixteen_writers_race(
    aws_store_url: Callable[[str], str], kind: str
) -> None:
    """A restarted server recording ``interrupted`` against a late finish elsewhere:
    whichever terminal record lands first stays, for every reader."""
    url = aws_store_url(kind)
    store = open_store(url)
    try:
        for task_id in range(1, 4):
            store.put(make_record(task_id, status="running"))
        go = threading.Barrier(16)

        def write(n: int) -> None:
            mine = open_store(url)  # a writer of its own, as another server would be
            try:
                go.wait()
                for task_id in range(1, 4):
                    status = TERMINAL[n % 4]
                    mine.put(make_record(task_id, status=status, result=f"writer {n}"))
            finally:
                mine.close()

        writers = [threading.Thread(target=write, args=(n,)) for n in range(16)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        for task_id in range(1, 4):
            final = store.get(task_id)
            assert final is not None and final["status"] in TERMINAL
            # Later writes, terminal or not, leave it as it is.
            store.put(make_record(task_id, status="running"))
            store.put(make_record(task_id, status="interrupted", result="too late"))
            assert store.get(task_id) == final
            assert open_store(url).get(task_id) == final
        assert store.unfinished(make_record(0)["owner"]) == []
    finally:
        store.close()


def test_a_megabyte_result_goes_through_s3_and_comes_back_whole(
    aws_store_url: Callable[[str], str],
) -> None:
    url = aws_store_url("dynamodb+overflow")
    store = open_store(url)
    try:
        big = make_record(7, status="succeeded", result=MEGABYTE)
        store.put(big)
        assert store.get(7) == big
        assert open_store(url).get(7) == big  # another process, the same answer
        table, bucket = url.split("//")[1].split("?")[0], url.split("s3://")[1].split("/")[0]
        item = boto3.client("dynamodb").get_item(
            TableName=table, Key={"task_id": {"N": "7"}}, ConsistentRead=True
        )["Item"]
        assert "record" not in item and item["record_at"]["S"] == "big/tasks/7.json"
        stored = boto3.client("s3").get_object(Bucket=bucket, Key="big/tasks/7.json")
        assert json.loads(stored["Body"].read())["result"] == MEGABYTE
        small = make_record(8, status="succeeded", result="small")
        store.put(small)
        assert store.get(8) == small  # kept in the item itself
    finally:
        store.close()


def test_a_megabyte_result_without_overflow_is_a_failed_record_that_says_why(
    aws_store_url: Callable[[str], str],
) -> None:
    store = open_store(aws_store_url("dynamodb"))
    try:
        store.put(make_record(7, status="running"))
        store.put(make_record(7, status="succeeded", result=MEGABYTE))
        kept = store.get(7)
        assert kept is not None
        assert (kept["status"], kept["result"]) == ("failed", None)
        assert f"over {MAX_INLINE:,}" in kept["error"]
        assert "?overflow=s3://BUCKET/PREFIX" in kept["error"]
        assert kept["name"] == "report"  # the rest of the record is kept
    finally:
        store.close()


def test_an_s3_record_of_any_size(aws_store_url: Callable[[str], str]) -> None:
    store = open_store(aws_store_url("s3"))
    try:
        big = make_record(7, status="succeeded", result=MEGABYTE * 3)
        store.put(big)
        assert store.get(7) == big
    finally:
        store.close()


# -- store init --------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentcore_sync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=servers.ROOT,
        env=servers._env(None, Path("/nonexistent")),
    )


def test_store_init_creates_the_table_or_bucket_once(moto_server: MotoServer) -> None:
    url = "dynamodb://init-test?overflow=s3://init-overflow/big"
    first = cli("store", "init", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"{url}: created table init-test (on-demand, key task_id)",
        f"{url}: enabled TTL on expires_at",
        f"{url}: created bucket init-overflow",
        f"{url}: records under big/ now expire after 1 day(s)",
    ]
    again = cli("store", "init", url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"{url}: table init-test exists already",
        f"{url}: TTL on expires_at enabled already",
        f"{url}: bucket init-overflow exists already",
        f"{url}: records under big/ expire after 1 day(s) already",
    ]
    table = boto3.client("dynamodb").describe_table(TableName="init-test")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "task_id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    s3 = cli("store", "init", "s3://init-bucket/results", "--ttl", "259200")
    assert s3.stdout.splitlines()[-1].endswith("records under results/ now expire after 3 day(s)")


def test_store_init_refuses_what_it_cannot_set_up() -> None:
    bad = cli("store", "init", "dynamodb://")
    assert bad.returncode == 2 and "names no table" in bad.stderr
    local = cli("store", "init", "memory://")
    assert local.returncode == 0 and "nothing to create" in local.stdout


# -- real servers ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dynamodb", "s3"])
def test_two_servers_sharing_a_store_see_each_others_results(
    aws_store_url: Callable[[str], str], tmp_path: Path, kind: str
) -> None:
    env = {"AGENTCORE_SYNC_RESULT_STORE": aws_store_url(kind)}
    with (
        servers.serving(servers.gunicorn("background_app:app", tmp_path, env=env)) as one,
        servers.serving(make_server("waitress", tmp_path, env=env)) as two,
    ):
        from_one = start(one, seconds=0.2, value="from one")
        from_two = start(two, coro=True, seconds=0.2, value="from two")
        assert wait_terminal(two, from_one)["result"] == {"value": "from one", "slept": 0.2}
        assert wait_terminal(one, from_two)["result"] == {"value": "from two"}


@pytest.mark.parametrize("kind", ["dynamodb", "s3"])
def test_a_task_cut_off_by_sigkill_reads_interrupted_after_a_restart(
    aws_store_url: Callable[[str], str], tmp_path: Path, kind: str
) -> None:
    env = {"AGENTCORE_SYNC_RESULT_STORE": aws_store_url(kind)}
    port = servers.free_port()
    first = make_server("waitress", tmp_path, env=env, port=port).start()
    try:
        task_id = start(first, seconds=30)
        deadline = time.monotonic() + 5
        while open_store(env["AGENTCORE_SYNC_RESULT_STORE"]).get(task_id) is None:
            assert time.monotonic() < deadline, "the running record never reached the store"
            time.sleep(0.1)
    finally:
        first.kill()
    with servers.serving(make_server("waitress", tmp_path, env=env, port=port)) as second:
        final = wait_terminal(second, task_id)
    assert final["status"] == "interrupted"


def test_a_store_outage_loses_nothing_and_a_missing_table_stops_nothing(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    own = MotoServer()  # a server of this test's own: an outage loses its data
    own.start()
    url = "dynamodb://outage"
    env = {"AGENTCORE_SYNC_RESULT_STORE": url, "AWS_ENDPOINT_URL": own.url}

    def init() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "agentcore_sync", "store", "init", url],
            env={**servers._env(env, tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    try:
        # No table yet: the server starts all the same, says so, and keeps records.
        with servers.serving(make_server("waitress", tmp_path, env=env)) as server:
            task_ids = [start(server, seconds=0.5, value=i) for i in range(3)]
            for i, task_id in enumerate(task_ids):
                assert wait_terminal(server, task_id)["result"]["value"] == i
            init()  # the table appears: the records kept meanwhile are written
            store = open_store(url.replace("outage", "outage?endpoint=" + own.url))
            deadline = time.monotonic() + 10
            while not all(store.get(t) for t in task_ids):
                assert time.monotonic() < deadline, server.log()[-3000:]
                time.sleep(0.2)
            # An outage mid-run: moto goes away, tasks finish meanwhile.
            own.stop()
            late = [start(server, seconds=0.3, value=10 + i) for i in range(2)]
            time.sleep(1.0)
            assert requests_ping(server) == "Healthy"
            assert [record(server, t)["status"] for t in late] == ["succeeded"] * 2
            own.start()
            init()
            deadline = time.monotonic() + 15
            while not all(store.get(t) for t in late):
                assert time.monotonic() < deadline, server.log()[-3000:]
                time.sleep(0.2)
            log = server.log()
        refusals = [line for line in log.splitlines() if "outage" in line and "ERROR" in line]
        assert 1 <= len(refusals) <= 3, log  # said once per outage, not per record
    finally:
        own.stop()


def requests_ping(server: servers.Server) -> Any:
    import requests

    return requests.get(server.url + "/ping", timeout=5).json()["status"]
