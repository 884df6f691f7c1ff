"""Soak: many invocations and background tasks in one server, then count what is left.

One server process (``tests/apps/hardening_app.py``, waitress via ``app.run()`` by
default, or gunicorn) serves, from a few keep-alive client threads, a mix of JSON
invocations, SSE streams and background starts: tasks that succeed, fail, are
cancelled (queued or running) and exceed their maximum duration. Afterwards:

- the task registry is empty and no invocation slot is held;
- every task has exactly one final record (task listener called once per task,
  and its stored record is terminal with the expected status);
- the server's thread count is back to its value after warm-up;
- its resident memory after warm-up grew by less than 10 %.

Thread count and RSS are read from ``/proc/<pid>/status`` of the serving process
(for gunicorn, the worker). The warm-up runs every kind of work once at the
scale of the run (so the task pool, the event loop and the store writer exist
and allocators have settled) before the baseline is taken.

The full soak (100,000 invocations, 10,000 background tasks) is one command::

    python tests/soak.py --full                   # waitress (app.run())
    python tests/soak.py --full --server gunicorn

``python tests/soak.py`` alone runs the shortened version that CI runs through
``tests/test_soak.py``; ``--invocations N --tasks M`` sets any other size. It
prints the figures (invocations/s, tasks, thread counts, RSS) and exits non-zero
when a check fails. The module also holds the helpers the other hardening tests
use to start the app and talk to it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers

ACTION = "hardening_action"
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})

FULL_INVOCATIONS = 100_000
FULL_TASKS = 10_000
#: The shortened soak CI runs.
CI_INVOCATIONS = 6_000
CI_TASKS = 600
#: Resident memory may grow by less than this fraction after warm-up.
MAX_RSS_GROWTH = 0.10


# -- the hardening app as a server ------------------------------------------------


def hardening_server(
    kind: str,
    tmp: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    gunicorn_args: tuple[str, ...] = (),
) -> servers.Server:
    """``hardening_app`` on waitress (``app.run()`` in ``python hardening_app.py``) or gunicorn."""
    environment = {"HARDENING_HOST": "127.0.0.1", **(env or {})}
    if kind == "gunicorn":
        return servers.gunicorn(
            "hardening_app:app", tmp, *gunicorn_args, env=environment, port=port
        )
    if kind == "waitress":
        return servers.run_script(
            servers.APPS / "hardening_app.py", tmp, env=environment, port=port
        )
    raise ValueError(f"unknown server kind {kind!r}")


@contextlib.contextmanager
def serving_hardening(kind: str, tmp: Path) -> Iterator[servers.Server]:
    """``hardening_app`` on ``kind``, with a SQLite result store in ``tmp``, while in use."""
    env = {"AGENTCORE_SYNC_RESULT_STORE": f"sqlite:///{tmp / 'results.db'}"}
    with servers.serving(hardening_server(kind, tmp, env=env)) as running:
        running.kind = kind  # type: ignore[attr-defined]
        yield running


Answer = servers.Reply  # the shared answer type of the tests


class Client:
    """One keep-alive HTTP/1.1 connection to a server (reconnects when the server closes)."""

    def __init__(self, url: str, timeout: float = 15.0, retry: bool = True) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        #: Whether a request that finds its kept-alive connection closed is sent again
        #: on a new one (off where a dropped connection must count as a failure).
        self.retry = retry
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed while idle: once more, fresh.
                self.close()
                if attempt == 2 or not self.retry:
                    raise
                continue
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            # After a 413 the body was left unread, and the server may close the
            # connection (RFC 9110 15.5.14) even when it said keep-alive: gunicorn
            # drains at most 64 KiB and then does. A careful client starts afresh.
            if response.will_close or answer.status == 413:
                self.close()
            return answer
        raise AssertionError("unreachable")

    def invoke(self, payload: Any, headers: dict[str, str] | None = None) -> Answer:
        body = json.dumps(payload).encode()
        return self.request(
            "POST", "/invocations", body, {"Content-Type": "application/json", **(headers or {})}
        )

    def call(self, action: str, **fields: Any) -> Any:
        """Invoke an action of the hardening app; it must answer 200 with JSON."""
        answer = self.invoke({ACTION: action, **fields})
        assert answer.status == 200, (action, answer.status, answer.body[:500])
        return answer.json()

    def ping(self) -> Answer:
        return self.request("GET", "/ping")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def proc_figures(pid: int) -> dict[str, int]:
    """``Threads`` and ``VmRSS`` (KiB) of a process, from ``/proc/<pid>/status``."""
    figures: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key == "Threads":
                figures["threads"] = int(value)
            elif key == "VmRSS":
                figures["rss_kib"] = int(value.split()[0])
    return figures


def serving_pid(client: Client) -> int:
    """The pid of the process that serves requests (gunicorn: the worker)."""
    return int(client.call("proc")["pid"])


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- the soak ---------------------------------------------------------------------

#: Background task kinds, in the order they are cycled through, with their expected status.
TASK_KINDS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("thread", {"kind": "thread", "value": 1}, {"succeeded"}),
    ("thread-fail", {"kind": "thread", "fail": True}, {"failed"}),
    ("coro", {"kind": "coro", "value": 2}, {"succeeded"}),
    ("coro-fail", {"kind": "coro", "fail": True}, {"failed"}),
    ("coro-cancel", {"kind": "coro", "seconds": 5, "cancel": True}, {"cancelled"}),
    ("coro-cancel-running", {"kind": "coro", "seconds": 30, "hold": True}, {"cancelled"}),
    ("overdue", {"kind": "overdue", "seconds": 2}, {"cancelled"}),
    # A thread task cancelled at once: cancelled if still queued, else it runs.
    (
        "thread-cancel",
        {"kind": "thread", "seconds": 0.002, "cancel": True},
        {"cancelled", "succeeded"},
    ),
    ("thread-slow", {"kind": "thread", "seconds": 0.01}, {"succeeded"}),
]


@dataclass
class Tally:
    invocations: int = 0
    streams: int = 0
    tasks: int = 0
    refused_503: int = 0
    errors: list[str] = field(default_factory=list)
    task_ids: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, message: str) -> None:
        with self.lock:
            if len(self.errors) < 50:
                self.errors.append(message)


def _worker(url: str, first: int, count: int, stride: int, task_every: int, tally: Tally) -> None:
    """Send invocations number ``first, first + stride, ...`` below ``count``."""
    client = Client(url)
    held: list[int] = []
    try:
        for n in range(first, count, stride):
            try:
                _one(client, n, task_every, tally, held)
            except Exception as exc:
                tally.error(f"invocation {n}: {type(exc).__name__}: {exc}")
                client.close()
        for task_id in held:
            client.call("cancel", task_id=task_id)
            with tally.lock:
                tally.invocations += 1
    finally:
        client.close()


def _one(client: Client, n: int, task_every: int, tally: Tally, held: list[int]) -> None:
    if n % task_every == 0:
        name, fields, _expected = TASK_KINDS[(n // task_every) % len(TASK_KINDS)]
        answer = client.invoke({ACTION: "start", **fields})
        if answer.status == 503:
            with tally.lock:
                tally.refused_503 += 1
            return
        if answer.status != 200:
            tally.error(f"start {name}: {answer.status} {answer.body[:200]!r}")
            return
        body = answer.json()
        with tally.lock:
            tally.invocations += 1
            tally.tasks += 1
            tally.task_ids.setdefault(name, []).append(body["task_id"])
        if fields.get("hold"):
            held.append(body["task_id"])
            if len(held) > 4:
                # Cancel a running coroutine a few invocations after it started.
                client.call("cancel", task_id=held.pop(0))
                with tally.lock:
                    tally.invocations += 1
        return
    if n % 10 == 1:
        answer = client.invoke({ACTION: "stream", "count": 3})
        expected = b'data: {"i": 0}\n\ndata: {"i": 1}\n\ndata: {"i": 2}\n\n'
        if answer.status == 200 and answer.body != expected:
            tally.error(f"stream {n}: {answer.body[:200]!r}")
        kind = "streams"
    else:
        payload = {"n": n, "text": "soak", "items": [n, str(n), None, True]}
        answer = client.invoke(payload)
        if answer.status == 200 and answer.json() != {"echo": payload}:
            tally.error(f"echo {n}: {answer.body[:200]!r}")
        kind = "invocations"
    if answer.status == 503:
        if "retry-after" not in answer.headers:
            tally.error(f"503 without Retry-After: {answer.headers}")
        with tally.lock:
            tally.refused_503 += 1
        return
    if answer.status != 200:
        tally.error(f"{kind} {n}: {answer.status} {answer.body[:200]!r}")
        return
    with tally.lock:
        tally.invocations += 1
        if kind == "streams":
            tally.streams += 1


def drive(url: str, invocations: int, tasks: int, clients: int) -> tuple[Tally, float]:
    """Send ``invocations`` invocations of which ``tasks`` start background tasks."""
    tally = Tally()
    task_every = max(1, invocations // max(1, tasks))
    threads = [
        threading.Thread(
            target=_worker,
            args=(url, i, invocations, clients, task_every, tally),
            name=f"soak-client-{i}",
            daemon=True,
        )
        for i in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - started


def saturate(url: str, connections: int) -> None:
    """Hold more invocations than the server has threads for a moment (some get 503)."""

    def sleep() -> None:
        client = Client(url)
        try:
            client.invoke({ACTION: "sleep", "seconds": 0.3})
        finally:
            client.close()

    threads = [threading.Thread(target=sleep, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)


class RSSSampler:
    """Samples a process's resident memory twice a second."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RSSSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append(proc_figures(self.pid)["rss_kib"])

    def quartiles(self) -> list[int]:
        samples = self.samples
        if not samples:
            return []
        return [samples[max(0, len(samples) * q // 4 - 1)] for q in (1, 2, 3, 4)]


def settle(client: Client, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until no task is active and only this request holds a slot; the last info."""

    def idle() -> dict[str, Any] | None:
        info = client.call("info")
        return info if info["active_count"] == 0 and info["in_flight"] == 1 else None

    info = wait_for(idle, timeout, interval=0.1)
    return info or client.call("info")


def audit(client: Client, tally: Tally) -> list[str]:
    """Problems with the final records of the tasks in ``tally``; empty when all is right."""
    problems: list[str] = []
    all_ids = [task_id for ids in tally.task_ids.values() for task_id in ids]
    expected = {name: statuses for name, _fields, statuses in TASK_KINDS}
    for name, ids in tally.task_ids.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            summary = client.call("records", task_ids=chunk)
            wrong = {s: n for s, n in summary["counts"].items() if s not in expected[name]}
            if wrong:
                problems.append(f"{name}: unexpected final statuses {wrong}")
            if summary["unfinished"]:
                problems.append(f"{name}: records not terminal: {summary['unfinished']}")
    missing: list[int] = []
    for start in range(0, len(all_ids), 2000):
        missing += client.call("audit", task_ids=all_ids[start : start + 2000])["missing"]
    if missing:
        problems.append(f"tasks without a final record: {missing[:20]}")
    listener = client.call("audit")
    if listener["duplicate_count"]:
        problems.append(f"tasks finished more than once: {listener['duplicates']}")
    if listener["held"]:
        problems.append(f"{listener['held']} held task(s) never cancelled")
    return problems


@dataclass
class SoakResult:
    kind: str
    invocations: int
    tasks: int
    streams: int
    refused_503: int
    seconds: float
    threads_start: int
    threads_warm: int
    threads_end: int
    rss_start_kib: int
    rss_warm_kib: int
    rss_end_kib: int
    statuses: dict[str, int]
    problems: list[str]
    rss_samples: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.invocations / self.seconds if self.seconds else 0.0

    @property
    def rss_growth(self) -> float:
        return (self.rss_end_kib - self.rss_warm_kib) / self.rss_warm_kib

    def report(self) -> str:
        return "\n".join(
            [
                f"soak on {self.kind}: {self.invocations} invocations ({self.streams} streams, "
                f"{self.refused_503} refused 503) and {self.tasks} background tasks "
                f"in {self.seconds:.1f}s = {self.rate:.0f} invocations/s",
                f"  final statuses: {self.statuses}",
                f"  threads: {self.threads_start} at start, {self.threads_warm} after warm-up, "
                f"{self.threads_end} at the end",
                f"  RSS: {self.rss_start_kib / 1024:.1f} MiB at start, "
                f"{self.rss_warm_kib / 1024:.1f} MiB after warm-up, "
                f"{self.rss_end_kib / 1024:.1f} MiB at the end "
                f"({self.rss_growth * 100:+.1f} % after warm-up); at 25/50/75/100 % of the "
                "run: " + ", ".join(f"{kib / 1024:.1f}" for kib in self.rss_samples) + " MiB",
                "  problems: " + ("; ".join(self.problems) if self.problems else "none"),
            ]
        )


def soak(
    kind: str,
    tmp: Path,
    invocations: int,
    tasks: int,
    clients: int = 6,
    warmup_fraction: float = 0.1,
) -> SoakResult:
    server = hardening_server(kind, tmp, env={"HARDENING_THREADS": str(SERVER_THREADS)})
    with servers.serving(server):
        client = Client(server.url)
        pid = serving_pid(client)
        start_figures = proc_figures(pid)
        warm_invocations = max(len(TASK_KINDS) * 20, int(invocations * warmup_fraction))
        warm_tasks = max(len(TASK_KINDS) * 4, int(tasks * warmup_fraction))
        warm_tally, _ = drive(server.url, warm_invocations, warm_tasks, clients)
        # The background pool keeps the threads it started (up to task_threads, 8),
        # and so does gunicorn's request pool (up to its threads): fill both once,
        # so that the baseline has all of them.
        for _ in range(POOL_THREADS + 2):
            client.call("start", kind="thread", seconds=0.3)
        saturate(server.url, SERVER_THREADS + 4)
        settle(client)
        time.sleep(WATCHDOG_SETTLE)
        warm = proc_figures(pid)
        warm_names = client.call("proc")["thread_names"]

        sampler = RSSSampler(pid).start()
        tally, seconds = drive(server.url, invocations, tasks, clients)
        sampler.stop()
        problems = list(warm_tally.errors) + list(tally.errors)
        info = settle(client)
        if info["active_count"] or info["in_flight"] != 1:
            problems.append(f"registry not empty afterwards: {info}")
        # Threads that end by themselves (the overdue watchdog) are given time to.
        end = wait_for(
            lambda: (f := proc_figures(pid))["threads"] <= warm["threads"] and f, 10.0
        ) or proc_figures(pid)
        if end["threads"] != warm["threads"]:
            names = client.call("proc")["thread_names"]
            added = sorted(set(names) - set(warm_names))
            gone = sorted(set(warm_names) - set(names))
            problems.append(
                f"thread count {end['threads']} at the end, {warm['threads']} after warm-up "
                f"(new: {added}, gone: {gone})"
            )
        problems += audit(client, warm_tally)
        problems += audit(client, tally)
        statuses = client.call("audit")["statuses"]
        client.close()
        result = SoakResult(
            kind=kind,
            invocations=tally.invocations,
            tasks=tally.tasks,
            streams=tally.streams,
            refused_503=tally.refused_503,
            seconds=seconds,
            threads_start=start_figures["threads"],
            threads_warm=warm["threads"],
            threads_end=end["threads"],
            rss_start_kib=start_figures["rss_kib"],
            rss_warm_kib=warm["rss_kib"],
            rss_end_kib=end["rss_kib"],
            statuses=statuses,
            problems=problems,
            rss_samples=sampler.quartiles(),
        )
        if result.rss_growth >= MAX_RSS_GROWTH:
            problems.append(f"RSS grew {result.rss_growth * 100:.1f} % after warm-up")
        return result


#: Threads of the server (HARDENING_THREADS, and the shipped gunicorn config's default).
SERVER_THREADS = 16
#: The runtime's default task_threads: the background pool's most threads.
POOL_THREADS = 8
#: Seconds for the overdue watchdog thread to notice the registry is empty and end.
WATCHDOG_SETTLE = 1.5


@contextlib.contextmanager
def _tmp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agentcore-soak-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="100,000 invocations, 10,000 tasks")
    parser.add_argument("--server", choices=["waitress", "gunicorn"], default="waitress")
    parser.add_argument("--invocations", type=int, default=None)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args(argv)
    invocations = args.invocations or (FULL_INVOCATIONS if args.full else CI_INVOCATIONS)
    tasks = args.tasks or (FULL_TASKS if args.full else CI_TASKS)
    with _tmp_dir() as tmp:
        result = soak(args.server, tmp, invocations, tasks, clients=args.clients)
    print(result.report())
    return 1 if result.problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
