"""``agentcore-sync emulate MODULE:APP``: a local AgentCore Runtime for an agent.

Client code written for the service (``boto3.client("bedrock-agentcore")``)
runs unchanged against it with ``endpoint_url=``; each runtime session gets an
agent process of its own, ended as the managed runtime ends it (see
``managed.emulator``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ..managed.durations import Duration
from ..managed.emulator import MAX_SESSIONS, START_TIMEOUT, STOP_GRACE, Emulator, event_line
from ..managed.lifecycle import PING_INTERVAL
from ..managed.microvm import Server
from .display import SessionsScreen
from .serve import Target
from .timers import timer_options

#: The file of the event log, in the log directory, when the screen takes the terminal.
EVENTS_FILE = "events.jsonl"


@click.command(short_help="A local AgentCore Runtime: sessions, lifecycle, boto3's client.")
@click.argument("target", metavar="MODULE:APP")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--server",
    type=click.Choice([server.value for server in Server]),
    default=Server.WAITRESS.value,
    show_default=True,
    help="How each session's agent is served.",
)
@click.option(
    "--ping-interval",
    type=Duration(min=0, min_open=True),
    default=PING_INTERVAL,
    show_default="2",
    help="Seconds between two pings of a session.",
)
@timer_options(short_ok=True)
@click.option(
    "--max-sessions",
    type=click.IntRange(1),
    default=MAX_SESSIONS,
    show_default=True,
    help="Sessions held at once; beyond it an invocation gets ThrottlingException.",
)
@click.option(
    "--start-timeout",
    type=Duration(min=0, min_open=True),
    default=START_TIMEOUT,
    show_default="60",
    help="Seconds a session's agent has to answer /ping Healthy.",
)
@click.option(
    "--stop-grace",
    type=Duration(min=0),
    default=STOP_GRACE,
    show_default="10",
    help="Seconds between SIGTERM and SIGKILL when a session ends.",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where session logs (and, on a terminal, the event log) go [a new temporary directory].",
)
def emulate(
    target: str,
    port: int,
    host: str,
    server: str,
    ping_interval: float,
    idle_timeout: float,
    max_lifetime: float,
    stuck_after: float,
    max_sessions: int,
    start_timeout: float,
    stop_grace: float,
    log_dir: Path | None,
) -> None:
    """Serve MODULE:APP as AgentCore Runtime would, at http://HOST:PORT (Ctrl-C to quit).

    Point boto3's client at it and invoke as in production:

    \b
      agentcore-sync emulate my_agent:app --idle-timeout 2m
      client = boto3.client("bedrock-agentcore", endpoint_url="http://127.0.0.1:8090")
      client.invoke_agent_runtime(agentRuntimeArn=ARN, runtimeSessionId=ID, payload=...)

    Each session id gets an agent process with a fresh home and temporary directory,
    removed when the session ends (idle timeout, maximum lifetime, no answer to /ping,
    StopRuntimeSession). Every session start, end and status change is a JSON line:
    on stdout when it is not a terminal, else in LOG_DIR/events.jsonl under a live view.
    """
    try:
        Target(target).check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    screen = sys.stdout.isatty()
    events_file = None
    lock = threading.Lock()

    def on_event(record: dict[str, Any]) -> None:
        with lock:
            line = event_line(record)
            if events_file is not None:
                events_file.write(line + "\n")
                events_file.flush()
                view.event(record)
            else:
                click.echo(line)

    try:
        emulator = Emulator(
            target,
            server=server,
            host=host,
            port=port,
            ping_interval=ping_interval,
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            stuck_after=stuck_after,
            max_sessions=max_sessions,
            start_timeout=start_timeout,
            stop_grace=stop_grace,
            log_dir=log_dir,
            on_event=on_event,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    view = SessionsScreen(
        sys.stdout, f"agentcore-sync emulate  {target}  at {emulator.url}  ({server})"
    )
    if screen:
        emulator.log_dir.mkdir(parents=True, exist_ok=True)
        events_file = (emulator.log_dir / EVENTS_FILE).open("a")
        view.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    # A closed terminal (SIGHUP) ends the sessions too: none is left without its emulator.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    emulator.start()
    try:
        while not stop.wait(ping_interval if screen else 3600):
            if screen:
                view.draw(emulator.sessions())
    finally:
        # Sessions first: the terminal may be gone already (SIGHUP), and writing to it fail.
        emulator.stop()
        if events_file is not None:
            events_file.close()
        with contextlib.suppress(OSError):
            if screen:
                view.close()
                click.echo(f"Events: {emulator.log_dir / EVENTS_FILE}")
