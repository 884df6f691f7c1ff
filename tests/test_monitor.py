"""``agentcore-sync monitor``: the managed runtime's view of a session, on the user's machine.

First the simulation itself (``cli/lifecycle.py``), replayed over timelines of
probes: it reads no clock, so hours of a session are checked exactly. Then the
command against real agents: run for a few seconds beside an agent with a
running task, a stuck task, or invocations arriving, as a pipe (one line per
poll) and under a pseudo-terminal (the live screen).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import servers
from test_cli import CLI, cli_env, cli_server, run_cli

from agentcore_sync.managed.durations import fmt_duration, parse_duration
from agentcore_sync.managed.lifecycle import (
    HEALTHY,
    HEALTHY_BUSY,
    Probe,
    Settings,
    SimulatedSession,
    TaskGroup,
    Tasks,
)

pytestmark = pytest.mark.e2e

T0 = 1_800_000_000.0

# -- the simulation --------------------------------------------------------------


def test_settings_take_the_managed_runtimes_ranges() -> None:
    Settings(60, 60)
    Settings(900, 28800)
    for idle, lifetime in [(59, 900), (900, 28801), (28801, 28801), (1000, 600)]:
        with pytest.raises(ValueError):
            Settings(idle, lifetime)
    with pytest.raises(ValueError, match="must not exceed the maximum lifetime"):
        Settings(1000, 600)


def test_durations_read_and_written_as_people_do() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("8h") == 28800
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2.5s") == 2.5
    for bad in ("", "soon", "5 minutes", "1d"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert fmt_duration(28800) == "8:00:00"
    assert fmt_duration(61.9) == "0:01:01"
    assert fmt_duration(-5) == "0:00:00"


def healthy(at: float, changed_at: float = T0, **kw: object) -> Probe:
    return Probe(T0 + at, HEALTHY, changed_at, **kw)  # type: ignore[arg-type]


def busy(at: float, changed_at: float, **kw: object) -> Probe:
    return Probe(T0 + at, HEALTHY_BUSY, changed_at, **kw)  # type: ignore[arg-type]


def test_idle_timeout_counts_while_healthy_and_ends_the_session() -> None:
    session = SimulatedSession(Settings(idle_timeout=900, max_lifetime=28800))
    first = session.observe(healthy(0))
    assert first.started_at == T0 and first.idle_left == 900 and first.lifetime_left == 28800
    assert any("Session started" in event for event in first.events)
    assert session.observe(healthy(600)).idle_left == 300
    ended = session.observe(healthy(902))
    assert ended.ended is not None and ended.ended.reason == "idle timeout"
    assert ended.ended.at == T0 + 900, "the moment the runtime would have stopped it"
    message = ended.events[-1]
    assert message.startswith("SESSION ENDED") and "idle for 0:15:00" in message
    assert "everything the agent holds in memory is lost" in message
    assert session.observe(healthy(904)).events == (), "said once"


def test_invocations_and_status_changes_reset_the_idle_countdown() -> None:
    session = SimulatedSession(Settings(idle_timeout=300, max_lifetime=3600))
    session.observe(healthy(0, last_invocation=T0 - 50))  # before the session: ignored
    assert session.observe(healthy(200)).idle_left == 100
    # An invocation made through `invoke` (recorded in its state file).
    view = session.observe(healthy(250, last_invocation=T0 + 240))
    assert view.idle_left == 290 and view.last_invocation == T0 + 240
    # An invocation seen in the metrics' counter (made by any client).
    tasks = Tasks(invocations=3)
    session.observe(healthy(260, last_invocation=T0 + 240, tasks=tasks))
    view = session.observe(healthy(280, last_invocation=T0 + 240, tasks=Tasks(invocations=4)))
    assert view.idle_left == 300, "counted at the poll that saw it"
    # A status change (busy for less than a poll) seen in time_of_last_update.
    view = session.observe(healthy(400, changed_at=T0 + 390, last_invocation=T0 + 240))
    assert view.idle_left == 290


def test_healthy_busy_holds_the_idle_timeout_but_not_the_maximum_lifetime() -> None:
    session = SimulatedSession(Settings(idle_timeout=60, max_lifetime=3600))
    session.observe(healthy(0))
    held = session.observe(busy(50, changed_at=T0 + 40))
    assert held.idle_left is None and held.idle_hold == "held while HealthyBusy"
    assert held.lifetime_left == 3550
    # Hours of HealthyBusy: the idle timeout never fires, the maximum lifetime does.
    assert session.observe(busy(3000, changed_at=T0 + 40)).ended is None
    ended = session.observe(busy(3601, changed_at=T0 + 40))
    assert ended.ended is not None and ended.ended.reason == "maximum lifetime"
    assert ended.ended.busy and ended.ended.at == T0 + 3600
    assert "while still HealthyBusy" in ended.events[-1]
    # Back to Healthy: the idle countdown starts from the change, not from the last invocation.
    session = SimulatedSession(Settings(idle_timeout=60, max_lifetime=3600))
    session.observe(busy(0, changed_at=T0))
    assert session.observe(healthy(500, changed_at=T0 + 490)).idle_left == 50


def test_an_invocation_in_flight_holds_the_idle_timeout() -> None:
    session = SimulatedSession(Settings(idle_timeout=60, max_lifetime=3600))
    session.observe(healthy(0, tasks=Tasks(in_flight=1)))
    view = session.observe(healthy(120, tasks=Tasks(in_flight=1)))
    assert view.ended is None and view.idle_left is None and "in progress" in str(view.idle_hold)
    assert session.observe(healthy(150, tasks=Tasks())).idle_left == 30


def test_healthy_busy_without_task_progress_is_reported_stuck() -> None:
    session = SimulatedSession(Settings(idle_timeout=900, max_lifetime=28800, stuck_after=600))
    job = Tasks(running=1, groups=(TaskGroup("job", 1, 5.0),))
    session.observe(busy(0, changed_at=T0, tasks=job))
    assert not session.observe(busy(500, changed_at=T0, tasks=job)).stuck
    # A task finishing while another starts is progress, though the count is the same.
    moved = Tasks(running=1, groups=(TaskGroup("job", 1, 1.0),), finished=1)
    view = session.observe(busy(550, changed_at=T0, tasks=moved))
    assert not view.stuck and view.busy_unchanged_for == 0
    assert not session.observe(busy(1100, changed_at=T0, tasks=moved)).stuck
    stuck = session.observe(busy(1151, changed_at=T0, tasks=moved))
    assert stuck.stuck and stuck.busy_unchanged_for == 601
    [warning] = stuck.events
    assert warning.startswith("STUCK? HealthyBusy for 0:10:01 with no task started or finished")
    assert "until its maximum lifetime: 7:40:49 from now" in warning
    assert session.observe(busy(1200, changed_at=T0, tasks=moved)).events == (), "said once"
    # Without metrics, only status changes are visible, and the warning says so.
    session = SimulatedSession(Settings(stuck_after=60))
    session.observe(busy(0, changed_at=T0))
    [warning] = session.observe(busy(61, changed_at=T0)).events
    assert "cannot see tasks without metrics" in warning


def test_workers_reporting_different_change_times_are_not_progress() -> None:
    # Under gunicorn -w N, /ping answers alternate between workers' time_of_last_update.
    session = SimulatedSession(Settings(stuck_after=60))
    for second in range(0, 64, 2):
        view = session.observe(busy(second, changed_at=T0 - (second // 2) % 2))
    assert view.stuck


def test_after_the_end_an_invocation_starts_a_new_session() -> None:
    session = SimulatedSession(Settings(idle_timeout=60, max_lifetime=3600))
    session.observe(healthy(0))
    assert session.observe(healthy(61)).ended is not None
    assert session.observe(healthy(100)).ended is not None, "stays ended while nothing happens"
    view = session.observe(healthy(200, last_invocation=T0 + 199))
    assert view.ended is None and view.started_at == T0 + 200
    assert any("New session" in event for event in view.events)


def test_the_first_invocation_names_the_session_it_does_not_start_one() -> None:
    # ``invoke`` kept an id from an earlier run; the first invocation of this
    # session comes with a new one: the same session, its lifetime running on.
    session = SimulatedSession(Settings(idle_timeout=600, max_lifetime=3600))
    session.observe(healthy(0, session_id="old-session"))
    view = session.observe(healthy(30, session_id="new-session", last_invocation=T0 + 29))
    assert view.started_at == T0 and not any("New session" in e for e in view.events)
    assert view.lifetime_left == 3600 - 30
    # A later change of id, after an invocation in this session, is a new session.
    view = session.observe(healthy(60, session_id="third-session", last_invocation=T0 + 59))
    assert view.started_at == T0 + 60
    assert any("invoke now uses session id third-session" in e for e in view.events)


def test_invocations_in_flight_are_not_none() -> None:
    from agentcore_sync.cli.display import invocation_text

    session = SimulatedSession(Settings())
    view = session.observe(healthy(0, tasks=Tasks(in_flight=2, invocations=2)))
    assert invocation_text(view) == "2 in flight, 2 since the agent started"
    view = session.observe(healthy(1, tasks=Tasks(invocations=2)))
    assert (
        invocation_text(view)
        == "none since the session started, 0 in flight, 2 since the agent started"
    )


def test_an_agent_that_stops_answering_comes_back_as_a_new_session() -> None:
    session = SimulatedSession(Settings(idle_timeout=60, max_lifetime=3600))
    session.observe(healthy(0))
    gone = session.observe(Probe(T0 + 10, error="cannot reach it"))
    assert gone.started_at is None and "stopped answering" in gone.events[0]
    back = session.observe(healthy(20, changed_at=T0 + 19))
    assert back.started_at == T0 + 20 and "answers /ping again" in back.events[0]


# -- the command against real agents ---------------------------------------------

LINE = re.compile(r"^\d\d:\d\d:\d\d \| ")
#: Longest wait for something monitor should show within seconds (a loaded CI machine).
WAIT = 20.0


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[servers.Server]:
    server = cli_server(tmp_path, "cli_app:app")
    server.tmp = tmp_path  # type: ignore[attr-defined]
    with servers.serving(server):
        yield server


class Monitor:
    """``agentcore-sync monitor URL`` with its output piped: one line per poll, read live."""

    def __init__(self, url: str, tmp: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [*CLI, "monitor", url, "--interval", "0.25", *args],
            env=cli_env(tmp),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def polls(self) -> list[str]:
        return [line for line in list(self.lines) if LINE.match(line)]

    def wait_for(self, condition: Callable[[Monitor], object], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition(self):
            assert self.process.poll() is None, f"monitor exited: {self.lines}"
            assert time.monotonic() < deadline, f"no {what} in {WAIT}s:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def stop(self) -> str:
        """SIGTERM: monitor exits 0. Returns everything it wrote."""
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(10) == 0, self.process.stderr.read()  # type: ignore[union-attr]
        finally:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        return "\n".join(self.lines)


def post(server: servers.Server, payload: dict) -> dict:
    response = requests.post(server.url + "/invocations", json=payload, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def lifetime_left(line: str) -> int:
    h, m, sec = re.search(r"\| lifetime (\d+):(\d\d):(\d\d) left", line).groups()  # type: ignore[union-attr]
    return int(h) * 3600 + int(m) * 60 + int(sec)


def idle_left(line: str) -> int | None:
    found = re.search(r"\| idle 0:(\d\d):(\d\d) left of 0:01:00", line)
    return int(found.group(1)) * 60 + int(found.group(2)) if found else None


def test_monitor_shows_busy_the_running_task_and_the_countdowns(agent: servers.Server) -> None:
    post(agent, {"action": "start", "seconds": 30})
    monitor = Monitor(agent.url, agent.tmp, "--idle-timeout", "60", "--max-lifetime", "120")  # type: ignore[attr-defined]
    # Runs for a few seconds: until the lifetime has counted down by two.
    monitor.wait_for(lambda m: m.polls and lifetime_left(m.polls[-1]) <= 118, "countdown")
    out = monitor.stop()
    lines = [line for line in out.splitlines() if LINE.match(line)]
    last = lines[-1]
    assert "| HealthyBusy held 0:00:0" in last
    assert "tasks 1 running, 0 queued (long_job x1 oldest 0:00:0" in last
    assert "idle held while HealthyBusy (resets to 0:01:00)" in last
    assert "lifetime 0:01:5" in last and "left of 0:02:00" in last
    lifetimes = [lifetime_left(line) for line in lines]
    assert lifetimes == sorted(lifetimes, reverse=True) and lifetimes[0] >= 119
    assert "STUCK" not in out, "a task seconds old is not stuck past the default 10 minutes"


def test_monitor_warns_loudly_about_a_stuck_session(agent: servers.Server) -> None:
    post(agent, {"action": "hang"})  # a task nobody completes
    monitor = Monitor(agent.url, agent.tmp, "--stuck-after", "2")  # type: ignore[attr-defined]
    monitor.wait_for(lambda m: len([p for p in m.polls if "STUCK" in p]) >= 2, "stuck warning")
    out = monitor.stop()
    warnings = [line for line in out.splitlines() if line.startswith("STUCK?")]
    assert len(warnings) == 1, "said once, loudly"
    assert "HealthyBusy for 0:00:02 with no task started or finished" in warnings[0]
    assert "until its maximum lifetime" in warnings[0]
    polls = [line for line in out.splitlines() if LINE.match(line)]
    assert "forgotten_task x1" in polls[-1]
    assert "| STUCK? no task progress for 0:00:0" in polls[-1]
    assert "STUCK" not in polls[0]


def test_invocations_reset_the_idle_countdown(agent: servers.Server) -> None:
    monitor = Monitor(agent.url, agent.tmp, "--idle-timeout", "60")  # type: ignore[attr-defined]

    def counted_down(m: Monitor) -> bool:
        return bool(m.polls) and (idle_left(m.polls[-1]) or 60) <= 58

    def reset_since(count: int) -> Callable[[Monitor], bool]:
        return lambda m: any((idle_left(p) or 0) >= 59 for p in m.polls[count:])

    monitor.wait_for(counted_down, "idle countdown")
    # Through `invoke`: it leaves the time of the invocation for monitor.
    seen = len(monitor.polls)
    done = run_cli(agent.tmp, "invoke", agent.url, '{"action": "echo"}')  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stderr
    monitor.wait_for(reset_since(seen), "reset after invoke")
    monitor.wait_for(counted_down, "idle countdown")
    # By any other client: monitor sees the agent's invocation counter move.
    seen = len(monitor.polls)
    post(agent, {"action": "echo"})
    monitor.wait_for(reset_since(seen), "reset after another client's invocation")
    out = monitor.stop()
    polls = [line for line in out.splitlines() if LINE.match(line)]
    # Healthy all along: the countdown held only while an invocation was in flight.
    assert all(
        idle_left(line) is not None or "invocation(s) in progress" in line for line in polls
    ), out
    idle = [left for left in map(idle_left, polls) if left is not None]
    rises = [(a, b) for a, b in itertools.pairwise(idle) if b > a]  # type: ignore[operator]
    assert len(rises) == 2, idle


def test_monitor_shows_the_tasks_of_an_agent_served_without_flags(tmp_path: Path) -> None:
    """No metrics: the tasks come from the agent's activity route, which answers
    this machine only."""
    agent = servers.waitress(
        "background_app:app", tmp_path, env={"AGENTCORE_SYNC_SHUTDOWN_GRACE": "1"}
    )
    with servers.serving(agent) as server:
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 404
        post(server, {"action": "start", "seconds": 5})
        monitor = Monitor(server.url, tmp_path, "--metrics-path", "")
        monitor.wait_for(lambda m: m.polls, "poll")
        out = monitor.stop()
    last = [line for line in out.splitlines() if LINE.match(line)][-1]
    assert "HealthyBusy" in last
    assert "tasks 1 running, 0 queued (" in last, last
    assert "not visible" not in out


def test_monitor_of_something_else_still_shows_the_status(tmp_path: Path) -> None:
    """A server of the contract that is not this runtime: no activity, no metrics."""
    script = tmp_path / "other.py"
    script.write_text(
        "import json, os\n"
        "from wsgiref.simple_server import make_server\n"
        "def app(environ, start_response):\n"
        "    if environ['PATH_INFO'] != '/ping':\n"
        "        start_response('404 Not Found', [('Content-Type', 'text/plain')])\n"
        "        return [b'not found']\n"
        "    start_response('200 OK', [('Content-Type', 'application/json')])\n"
        "    return [json.dumps({'status': 'Healthy', 'time_of_last_update': 1}).encode()]\n"
        "make_server('127.0.0.1', int(os.environ['PORT']), app).serve_forever()\n"
    )
    with servers.serving(servers.run_script(script, tmp_path)) as server:
        monitor = Monitor(server.url, tmp_path)
        monitor.wait_for(lambda m: m.polls, "poll")
        out = monitor.stop()
    last = [line for line in out.splitlines() if LINE.match(line)][-1]
    assert "| Healthy" in last
    assert "tasks not visible: no agentcore metrics at /metrics: serve the agent with " in last


def test_monitor_keeps_watching_an_agent_that_does_not_answer(tmp_path: Path) -> None:
    port = servers.free_port()
    monitor = Monitor(f"127.0.0.1:{port}", tmp_path)
    monitor.wait_for(lambda m: len(m.polls) >= 2, "polls")
    out = monitor.stop()
    assert f"no answer: cannot reach http://127.0.0.1:{port}/ping: connection refused" in out


# -- under a pseudo-terminal: the live screen --------------------------------------


def read_pty(master: int, seconds: float) -> bytes:
    data = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([master], [], [], min(left, 0.1))
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            data += chunk
    return data


def test_monitor_draws_a_live_screen_on_a_terminal(agent: servers.Server) -> None:
    post(agent, {"action": "hang"})
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = cli_env(agent.tmp)  # type: ignore[attr-defined]
    env.update(TERM="xterm-256color", COLUMNS="100", LINES="40")
    process = subprocess.Popen(
        [*CLI, "monitor", agent.url, "--interval", "0.25", "--stuck-after", "1"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    try:
        screen = b""
        deadline = time.monotonic() + WAIT
        while screen.count(b"!! STUCK?") < 2 and time.monotonic() < deadline:
            screen += read_pty(master, 0.25)
        process.send_signal(signal.SIGTERM)
        screen += read_pty(master, 5.0)
        assert process.wait(5) == 0
    finally:
        process.kill()
        process.wait()
        os.close(master)
    text = screen.decode("utf-8", errors="replace")
    assert text.startswith("\x1b[?25l\x1b[2J\x1b[H"), "hides the cursor and clears the screen"
    assert text.endswith("\x1b[?25h"), "gives the cursor back on exit"
    frames = [frame for frame in text.split("\x1b[H") if frame][1:]
    assert len(frames) >= 4, "redrawn in place at each poll"
    last = frames[-1]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", last)
    rows = plain.split("\r\n")
    assert all(len(row) < 100 for row in rows), "no row wraps"
    assert re.search(r"Status +HealthyBusy held 0:00:0\d", plain)
    assert re.search(r"Tasks +1 running, 0 queued", plain)
    assert "forgotten_task x1 oldest 0:00:0" in plain
    assert re.search(r"Idle timeout +held while HealthyBusy", plain)
    assert re.search(r"Max lifetime +7:59:5\d left of 8:00:00", plain)
    assert "!! STUCK? HealthyBusy with no task progress" in plain
    assert "\x1b[33m\x1b[1mHealthyBusy" in last, "the status in yellow"
    assert "\x1b[31m\x1b[1m\x1b[7m!! STUCK?" in last, "the warning in red, reversed"
    assert text.count("\a") == 1, "the bell rings once when the session turns stuck"
    ends = [frame.removesuffix("\x1b[?25h").removesuffix("\a") for frame in frames]
    assert all(end.endswith("\x1b[J") for end in ends), (
        "each frame erases what is left of the previous one"
    )
