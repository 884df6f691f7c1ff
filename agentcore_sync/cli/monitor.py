"""``agentcore-sync monitor [URL]``: what the managed runtime sees of your agent, live.

It polls ``/ping`` at the managed runtime's interval and replays the session's
timers (``lifecycle``): how long the status has held, the running tasks (from
the agent's metrics), the idle-timeout countdown (reset by invocations, whether
made through ``invoke`` or seen in the metrics, and by status changes), the time
left to the maximum lifetime, a loud warning when HealthyBusy lasts with no
task progressing, and the moment the managed runtime would end the session.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import click

from ..managed.client import agent_url
from ..managed.durations import Duration
from ..managed.lifecycle import PING_INTERVAL, Settings, SimulatedSession
from ..managed.probe import AgentProbe
from . import sessions
from .display import display_for
from .timers import timer_options


def watch(probe: AgentProbe, settings: Settings, interval: float, stop: threading.Event) -> None:
    """Poll and draw until ``stop`` is set; the polls keep a steady rhythm."""
    session = SimulatedSession(settings)
    display = display_for(sys.stdout)
    display.start(f"agentcore-sync monitor  {probe.base_url}  (ping every {interval:g}s)")
    try:
        next_poll = time.monotonic()
        while not stop.is_set():
            display.draw(session.observe(probe.poll()))
            next_poll += interval
            if next_poll < time.monotonic():  # a slow poll: skip ahead, never burst
                next_poll = time.monotonic() + interval
            stop.wait(max(0.0, next_poll - time.monotonic()))
    finally:
        display.close()


@click.command(short_help="Watch an agent as the managed runtime does.")
@click.argument("url", required=False)
@click.option(
    "--interval",
    type=Duration(min=0.1),
    default=PING_INTERVAL,
    show_default="2",
    help="Seconds between two pings (the managed runtime pings every 2 s).",
)
@timer_options(short_ok=False)
@click.option(
    "--metrics-path",
    default="/metrics",
    show_default=True,
    help="Where the agent serves its metrics: the tasks shown when its activity route does "
    "not answer (an agent on another machine); '' for none.",
)
def monitor(
    url: str | None,
    interval: float,
    idle_timeout: float,
    max_lifetime: float,
    stuck_after: float,
    metrics_path: str,
) -> None:
    """Watch the agent at URL as the managed runtime would (Ctrl-C to quit).

    URL defaults to $AGENTCORE_SYNC_URL, else http://127.0.0.1:8080. The running
    tasks are read from the agent's activity route (answered on this machine) or
    its Prometheus metrics (serve it with --metrics-path /metrics); reading them
    is not an invocation, so watching never resets the idle countdown.

    \b
      agentcore-sync monitor
      agentcore-sync monitor localhost:9000 --idle-timeout 5m --max-lifetime 1h
    """
    try:
        settings = Settings(idle_timeout, max_lifetime, stuck_after)
    except ValueError as exc:
        raise click.UsageError(
            f"--idle-timeout {idle_timeout:g} and --max-lifetime {max_lifetime:g}: {exc}"
        ) from None
    try:
        base_url = agent_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    if metrics_path and not metrics_path.startswith("/"):
        raise click.BadParameter(
            f"{metrics_path!r} must start with '/'", param_hint="--metrics-path"
        )

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def recorded() -> tuple[str | None, float | None]:
        state = sessions.load(base_url)
        return (state.session_id, state.last_invocation) if state else (None, None)

    watch(AgentProbe(base_url, metrics_path, recorded=recorded), settings, interval, stop)
