"""Load (issue 6): 64 concurrent clients for a bounded time against each real server.

Each client, on its own keep-alive connection, mixes JSON invocations (the echo
is checked), SSE streams (every event is checked), background starts (every
task's record is checked at the end) and polls of earlier tasks. A monitor pings
every 50 ms throughout. Pass: zero errors other than the designed 503 (which
must carry ``Retry-After`` and a JSON error), every answer correct, ``/ping``
within 1 s, and afterwards an empty registry and no invocation slot held.

Two configurations per server: the defaults (16 threads, so at most 14
invocations at once: 64 clients get designed 503s) and 80 threads (78
invocations at once: 64 clients must get no 503 at all).

``LOAD_SECONDS`` sets the duration of each run (6 s by default).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import servers
from soak import ACTION, Client, hardening_server, wait_for
from test_hostile_input import PingMonitor

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CLIENTS = 64
SECONDS = float(os.environ.get("LOAD_SECONDS", "6"))
PING_WITHIN = 1.0


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    tasks: dict[int, Any] = field(default_factory=dict)  # task id -> expected value
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, message: str) -> None:
        with self.lock:
            if len(self.errors) < 30:
                self.errors.append(message)
            self.counts["errors"] += 1

    def add(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1


def refused(answer: Any, outcome: Outcome, what: str) -> bool:
    """Whether the answer is the designed 503; an ill-formed 503 is an error."""
    if answer.status != 503:
        return False
    if "retry-after" not in answer.headers or answer.content_type != "application/json":
        outcome.error(f"{what}: 503 without Retry-After or JSON: {answer.headers}")
    elif "error" not in answer.json():
        outcome.error(f"{what}: 503 body {answer.body!r}")
    outcome.add("503")
    time.sleep(random.uniform(0.005, 0.05))  # back off (Retry-After is 1 s; kept short here)
    return True


def client_loop(url: str, number: int, deadline: float, outcome: Outcome) -> None:
    rng = random.Random(number)
    client = Client(url, timeout=30)
    started: list[tuple[int, Any]] = []
    sequence = 0
    try:
        while time.monotonic() < deadline:
            sequence += 1
            choice = rng.random()
            what = f"client {number} request {sequence}"
            try:
                if choice < 0.6:
                    payload = {
                        "client": number,
                        "seq": sequence,
                        "data": "x" * rng.randint(0, 2000),
                    }
                    answer = client.invoke(payload)
                    if refused(answer, outcome, what):
                        continue
                    if answer.status != 200 or answer.json() != {"echo": payload}:
                        outcome.error(f"{what}: echo {answer.status} {answer.body[:200]!r}")
                    else:
                        outcome.add("echo")
                elif choice < 0.8:
                    count = rng.randint(1, 20)
                    action = rng.choice(["stream", "stream_task", "astream_task"])
                    answer = client.invoke({ACTION: action, "count": count})
                    if refused(answer, outcome, what):
                        continue
                    expected = b"".join(
                        b"data: " + json.dumps({"i": i}).encode() + b"\n\n" for i in range(count)
                    )
                    if answer.status != 200 or answer.body != expected:
                        outcome.error(f"{what}: {action} {answer.status} {answer.body[:200]!r}")
                    else:
                        outcome.add("stream")
                elif choice < 0.92 or not started:
                    value = [number, sequence]
                    kind = rng.choice(["thread", "coro"])
                    seconds = rng.choice([0, 0, 0.05, 0.2])
                    answer = client.invoke(
                        {ACTION: "start", "kind": kind, "seconds": seconds, "value": value}
                    )
                    if refused(answer, outcome, what):
                        continue
                    if answer.status != 200:
                        outcome.error(f"{what}: start {answer.status} {answer.body[:200]!r}")
                        continue
                    task_id = answer.json()["task_id"]
                    started.append((task_id, value))
                    with outcome.lock:
                        outcome.tasks[task_id] = {"value": value}
                    outcome.add("start")
                else:
                    task_id, value = rng.choice(started)
                    answer = client.invoke({ACTION: "result", "task_id": task_id})
                    if refused(answer, outcome, what):
                        continue
                    record = answer.json()["record"] if answer.status == 200 else None
                    if record is None or record["task_id"] != task_id:
                        outcome.error(f"{what}: poll {answer.status} {answer.body[:200]!r}")
                    elif record["status"] == "succeeded" and record["result"] != {"value": value}:
                        outcome.error(f"{what}: result {record}")
                    elif record["status"] not in ("queued", "running", "succeeded"):
                        outcome.error(f"{what}: status {record['status']}")
                    else:
                        outcome.add("poll")
            except Exception as exc:
                outcome.error(f"{what}: {type(exc).__name__}: {exc}")
                client.close()
    finally:
        client.close()


@pytest.mark.parametrize(
    "kind, threads",
    [("waitress", 16), ("gunicorn", 16), ("waitress", 80), ("gunicorn", 80)],
    ids=["waitress-defaults", "gunicorn-defaults", "waitress-80-threads", "gunicorn-80-threads"],
)
def test_64_concurrent_clients(kind: str, threads: int, tmp_path: Path) -> None:
    # app.run() threads for waitress; the shipped gunicorn.conf.py reads AGENTCORE_SYNC_THREADS.
    env = {"HARDENING_THREADS": str(threads), "AGENTCORE_SYNC_THREADS": str(threads)}
    server = hardening_server(kind, tmp_path, env=env)
    with servers.serving(server):
        monitor = PingMonitor(server.url).start()
        outcome = Outcome()
        deadline = time.monotonic() + SECONDS
        workers = [
            threading.Thread(target=client_loop, args=(server.url, n, deadline, outcome))
            for n in range(CLIENTS)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(SECONDS + 60)
        elapsed = time.perf_counter() - started
        monitor.stop()

        client = Client(server.url)

        def idle() -> bool:
            info = client.call("info")
            return info["active_count"] == 0 and info["in_flight"] == 1

        assert wait_for(idle, 20), client.call("info")
        ids = list(outcome.tasks)
        for start in range(0, len(ids), 500):
            summary = client.call("records", task_ids=ids[start : start + 500])
            assert summary["counts"].keys() <= {"succeeded"}, summary
        for task_id in ids[:: max(1, len(ids) // 50)]:
            record = client.call("result", task_id=task_id)["record"]
            assert record["result"] == outcome.tasks[task_id], record
        client.close()

    answered = sum(n for kind_, n in outcome.counts.items() if kind_ != "errors")
    print(
        f"\n{kind} ({threads} threads), {CLIENTS} clients for {elapsed:.1f}s: "
        f"{answered / elapsed:.0f} answers/s {dict(outcome.counts)}; "
        f"{len(ids)} tasks; /ping worst {monitor.worst * 1000:.0f} ms over {monitor.count}"
    )
    assert not outcome.errors, outcome.errors
    assert not monitor.failures, monitor.failures[:10]
    assert monitor.worst < PING_WITHIN, f"/ping took {monitor.worst:.3f}s under load"
    assert outcome.counts["echo"] and outcome.counts["stream"] and outcome.counts["start"]
    if threads - 2 >= CLIENTS:
        assert outcome.counts["503"] == 0, "refusals although the server has room for all"
