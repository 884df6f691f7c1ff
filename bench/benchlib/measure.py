"""How each figure is measured: groups of figures that share servers, peers taking turns."""

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import probe, servers, wrk
from .config import ECHO_PAYLOAD, Settings
from .peers import Peer, preflight, session_env
from .results import Figure, Row

TASKS_PING_INTERVAL = 0.01  # figure 6 probes /ping every 10 ms


class MeasureError(RuntimeError):
    """A measurement that could not be made; the reason goes into the results."""


@dataclass
class Context:
    settings: Settings
    work_dir: Path  # this run's scratch space: server logs, stores, micro results
    wrk_missing: str | None  # why wrk cannot run, or None

    def session_dir(self, group: str, peer: Peer, round_: int) -> Path:
        path = self.work_dir / group / f"{peer.key}-{peer.handler}-r{round_}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, peer: Peer, session_dir: Path):
        return servers.running(peer, session_dir, waitress_threads=self.settings.waitress_threads)

    def load(self, server, path: str, row: Row, seconds: int | None = None) -> float:
        """Successful responses per second of a wrk run: of ``seconds`` if given, else
        of the settings' length after an unmeasured warm-up run."""
        if self.wrk_missing:
            raise MeasureError(self.wrk_missing)
        url = f"http://{server.host}:{server.port}{path}"
        post = path == "/invocations"
        common = {"connections": self.settings.connections, "post_json": post}
        if seconds is None:
            seconds = self.settings.wrk_seconds
            if self.settings.wrk_warmup_seconds:
                wrk.run(url, seconds=self.settings.wrk_warmup_seconds, **common)
        if not seconds:
            return 0.0
        result = wrk.run(url, seconds=seconds, **common)
        if result.non_2xx or result.socket_errors:
            row.notes.append(
                f"{path}: {result.non_2xx} non-2xx responses, {result.socket_errors} socket "
                f"errors in {result.requests} requests (not counted)"
            )
        return result.ok_per_second


def describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return (
        text
        if isinstance(exc, MeasureError | servers.ServerError)
        else f"{type(exc).__name__}: {text}"
    )


@contextlib.contextmanager
def guarded(*rows: Row):
    """Record a failure in the rows instead of ending the run."""
    try:
        yield
    except Exception as exc:
        for row in rows:
            row.fail(describe(exc))


def take_turns(ctx: Context, group: str, figures: list[Figure], peers: list[Peer], measure):
    """A B A B: each round measures every peer once, in the same order."""

    def rows(peer):
        return [fig.row(peer) for fig in figures if peer.key in fig.rows]

    runnable = []
    for peer in peers:
        error = preflight(peer)
        if error:
            for row in rows(peer):
                row.fail(f"cannot import: {error}")
        else:
            runnable.append(peer)
    for round_ in range(ctx.settings.rounds):
        for peer in runnable:
            print(f"bench: {group}, round {round_ + 1}: {peer.label}", flush=True)
            with guarded(*rows(peer)):
                measure(peer, round_, ctx.session_dir(group, peer, round_))


def note_once(row: Row, note: str) -> None:
    if note not in row.notes:
        row.notes.append(note)


# Figures 1 and 2: one server per peer and round serves both loads.


def throughput(ctx: Context, ping: Figure, echo: Figure):
    def measure(peer, _round, session_dir):
        with ctx.start(peer, session_dir) as server:
            probe.warm_up(server.host, server.port, ECHO_PAYLOAD)
            with guarded(ping.row(peer)):
                ping.row(peer).add("rps", ctx.load(server, "/ping", ping.row(peer)))
            with guarded(echo.row(peer)):
                echo.row(peer).add("rps", ctx.load(server, "/invocations", echo.row(peer)))

    take_turns(ctx, "throughput", [ping, echo], ping.peers, measure)


# Figure 3: /ping while twice the thread count of long invocations are in flight.


def starvation(ctx: Context, figure: Figure):
    seconds = ctx.settings.long_seconds
    settle = min(0.3, seconds / 4)

    def measure(peer, _round, session_dir):
        row = figure.row(peer)
        threads = servers.thread_count(
            peer, ctx.settings.waitress_threads, servers.sdk_thread_pool()
        )
        count = 2 * threads
        with ctx.start(peer, session_dir) as server:
            probe.warm_up(server.host, server.port, ECHO_PAYLOAD)
            # A starved /ping waits for the invocations ahead of it: give it their time.
            timeout = 3 * seconds + 10
            invocations = probe.LongInvocations(
                server.host, server.port, count=count, seconds=seconds, timeout=timeout
            ).start()
            time.sleep(settle)
            prober = probe.PingProber(
                server.host,
                server.port,
                window=seconds - 2 * settle,
                interval=ctx.settings.ping_interval,
                timeout=timeout,
            ).start()
            result = prober.join()
            statuses = invocations.join()
        for key, value in result.summary_ms().items():
            row.add(key, value)
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items(), key=str))
        note_once(row, f"{count} long invocations (2 x {threads} threads) answered {answers}")
        if result.failures:
            row.notes.append(f"{result.failures} of {len(result.latencies)} pings failed")

    take_turns(ctx, "starvation", [figure], figure.peers, measure)


# Figures 6 and 7: 10,000 sleeping background tasks.


def _wait_until_idle(server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = probe.request(server.host, server.port, "GET", "/ping", timeout=10)
        if isinstance(body, dict) and body.get("status") == "Healthy":
            return
        time.sleep(0.1)
    raise MeasureError(f"still busy {timeout:.0f} s after the tasks should have ended")


def tasks(ctx: Context, started: Figure, loaded: Figure):
    settings = ctx.settings
    count = settings.tasks
    # The tasks outlive the probing window and the loads (two warm-ups, then one-second
    # slices on two servers), with a margin for wrk's start-up and a slow start.
    sleep = settings.tasks_window + 2.4 * (settings.wrk_warmup_seconds + settings.wrk_seconds) + 5

    def spawn(server, row: Row) -> None:
        rss_before = server.rss_bytes()
        with probe.RssSampler(server) as rss:
            prober = probe.PingProber(
                server.host,
                server.port,
                window=settings.tasks_window,
                interval=TASKS_PING_INTERVAL,
                timeout=10,
            ).start()
            began = time.perf_counter()
            status, body = probe.request(
                server.host,
                server.port,
                "POST",
                "/invocations",
                {"spawn": count, "sleep": sleep},
                timeout=60,
            )
            round_trip = time.perf_counter() - began
            result = prober.join()
        if status != 200 or not isinstance(body, dict):
            raise MeasureError(f"starting the tasks answered {status}: {body!r}"[:300])
        if body.get("active", 0) < count:
            row.notes.append(f"only {body.get('active')} of {count} tasks active once started")
        row.add("start_s", round_trip)
        for key, value in result.summary_ms().items():
            row.add(key, value)
        row.add("start_server_s", body["elapsed"])
        row.add("rss_mb", (rss.peak - rss_before) / 2**20)
        if result.failures:
            row.notes.append(f"{result.failures} of {len(result.latencies)} pings failed")

    def measure(peer, _round, session_dir):
        row = loaded.row(peer)
        # Two of the same server: one gets the tasks, the other none; wrk then
        # alternates between them in one-second slices (A B A B), so that the
        # machine's drift, large at these rates, falls on both alike.
        with ctx.start(peer, session_dir / "none") as idle, ctx.start(peer, session_dir) as busy:
            for server in (idle, busy):
                probe.warm_up(server.host, server.port, ECHO_PAYLOAD)
            spawn(busy, started.row(peer))  # without tasks, neither figure has a value
            with guarded(row):
                for server in (idle, busy):
                    ctx.load(server, "/ping", row, seconds=settings.wrk_warmup_seconds)
                # A B B A: the run just after another one was measured slower, and
                # that must not fall on one server only (two idle servers, always
                # in the same order: 0.91-0.99x; alternating: 1.00-1.03x).
                pair_of_servers, totals = (idle, busy), [0.0, 0.0]
                for pair in range(settings.wrk_seconds):
                    for index in (0, 1) if pair % 2 == 0 else (1, 0):
                        totals[index] += ctx.load(pair_of_servers[index], "/ping", row, seconds=1)
                none, tasks = totals
                for server, expected in ((busy, "HealthyBusy"), (idle, "Healthy")):
                    _, body = probe.request(server.host, server.port, "GET", "/ping", timeout=10)
                    if not isinstance(body, dict) or body.get("status") != expected:
                        raise MeasureError(f"/ping after the load: {body!r}, not {expected}")
                _wait_until_idle(busy, sleep + 30)  # stopped with tasks, it would wait for them
                row.add("rps_none", none / settings.wrk_seconds)
                row.add("rps_tasks", tasks / settings.wrk_seconds)
                row.add("ratio", tasks / none)

    take_turns(ctx, "tasks", [started, loaded], started.peers, measure)


# Figure 8: gunicorn with three workers and with one.


def workers(ctx: Context, figure: Figure):
    def measure(peer, _round, session_dir):
        with ctx.start(peer, session_dir) as server:
            probe.warm_up(server.host, server.port, ECHO_PAYLOAD)
            figure.row(peer).add("rps", ctx.load(server, "/ping", figure.row(peer)))

    take_turns(ctx, "workers", [figure], figure.peers, measure)


# Figures 4 and 5: in-process, one subprocess per runtime, figure and round.


def _micro(ctx: Context, name: str, peer: Peer, session_dir: Path) -> dict:
    result_path = session_dir / f"{name}.json"
    log_path = session_dir / f"{name}.out"
    command = [
        sys.executable,
        "-m",
        "benchlib.micro",
        name,
        peer.runtime,
        "--seconds",
        str(ctx.settings.micro_seconds),
        "--repeats",
        str(ctx.settings.micro_repeats),
        "--log",
        str(session_dir / f"{name}-app.log"),
        "--result",
        str(result_path),
    ]
    with log_path.open("wb") as log:
        done = subprocess.run(
            command,
            cwd=session_dir,
            env=session_env(session_dir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=20 * ctx.settings.micro_seconds + 120,
        )
    if done.returncode != 0 or not result_path.exists():
        lines = log_path.read_text(errors="replace").strip().splitlines()
        raise MeasureError(f"exit code {done.returncode}: {lines[-1] if lines else ''}")
    return json.loads(result_path.read_text())


def micro(ctx: Context, registry: Figure, overhead: Figure):
    def measure(peer, _round, session_dir):
        with guarded(registry.row(peer)):
            result = _micro(ctx, "registry", peer, session_dir)
            registry.row(peer).add("pairs_1", result["pairs_1"])
            registry.row(peer).add("pairs_8", result["pairs_8"])
        with guarded(overhead.row(peer)):
            row = overhead.row(peer)
            result = _micro(ctx, "overhead", peer, session_dir)
            row.add("coroutine_us", result["coroutine_us"])
            if "plain_us" in result:
                row.add("plain_us", result["plain_us"])
            else:
                note_once(row, f"plain function not measured: {result['plain_not_measured']}")

    take_turns(ctx, "micro", [registry, overhead], registry.peers, measure)


# Figure 9: what a session's microVM costs while it waits: start, idle memory, idle CPU.


def microvm(ctx: Context, figure: Figure):
    def measure(peer, _round, session_dir):
        row = figure.row(peer)
        start_s, server = servers.launch_until_healthy(
            peer, session_dir, waitress_threads=ctx.settings.waitress_threads
        )
        try:
            row.add("start_s", start_s)
            for _ in range(3):
                probe.request(server.host, server.port, "GET", "/ping")
            time.sleep(1.0)  # what start-up left behind settles (threads, imports)
            row.add("rss_mb", server.rss_bytes() / 1e6)
            window = ctx.settings.idle_seconds
            before = server.cpu_seconds()
            began = time.monotonic()
            while time.monotonic() - began < window:
                probe.request(server.host, server.port, "GET", "/ping")
                time.sleep(min(2.0, max(0.0, window - (time.monotonic() - began))))
            used = server.cpu_seconds() - before
            row.add("cpu_ms", used * 1000 * 60 / (time.monotonic() - began))
        finally:
            server.stop()

    take_turns(ctx, "microvm", [figure], figure.peers, measure)
