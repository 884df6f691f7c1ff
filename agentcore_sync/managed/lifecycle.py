"""The managed runtime's view of one session, from what a poll of the agent sees.

``monitor`` replays it beside an agent; the emulator enforces it.

AgentCore Runtime pings the agent every couple of seconds and ends a session
(its microVM, and all that the agent holds in memory) when either of two
timers runs out:

- the idle timeout (``idleRuntimeSessionTimeout``, 900 s by default) counts
  while the agent reports ``Healthy``; each invocation resets it and
  ``HealthyBusy`` holds it;
- the maximum lifetime (``maxLifetime``, 8 h by default) counts from the
  session's start and is never reset, whatever the agent reports.

So a session stuck in ``HealthyBusy`` is kept, and billed, until its maximum
lifetime. Nothing here does I/O or reads the clock: ``SimulatedSession`` is fed
``Probe`` values (what one poll saw, stamped with its time) and answers
``View`` values (what to show), so any timeline can be replayed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .durations import clock, fmt_duration

HEALTHY = "Healthy"
HEALTHY_BUSY = "HealthyBusy"

#: Both lifecycle settings must lie in this range (seconds), as in LifecycleConfiguration.
LIFECYCLE_MIN = 60
LIFECYCLE_MAX = 28800
DEFAULT_IDLE_TIMEOUT = 900.0
DEFAULT_MAX_LIFETIME = 28800.0
#: The managed runtime pings every 2 seconds (seen in its logs).
PING_INTERVAL = 2.0
DEFAULT_STUCK_AFTER = 600.0


@dataclass(frozen=True)
class Settings:
    """The session's lifecycle configuration, checked as the managed runtime checks it."""

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_lifetime: float = DEFAULT_MAX_LIFETIME
    #: Seconds of HealthyBusy without any task starting or finishing before a warning.
    stuck_after: float = DEFAULT_STUCK_AFTER
    #: Accept timers shorter than the managed runtime allows (the emulator's tests).
    short_ok: bool = False

    def __post_init__(self) -> None:
        for name, value in (
            ("idle timeout", self.idle_timeout),
            ("maximum lifetime", self.max_lifetime),
        ):
            if self.short_ok and 0 < value <= LIFECYCLE_MAX:
                continue
            if not LIFECYCLE_MIN <= value <= LIFECYCLE_MAX:
                raise ValueError(
                    f"the {name} must be between {LIFECYCLE_MIN} and {LIFECYCLE_MAX} seconds, "
                    f"as in the managed runtime; got {value:g}"
                )
        if self.idle_timeout > self.max_lifetime:
            raise ValueError(
                f"the idle timeout ({self.idle_timeout:g}s) must not exceed the maximum lifetime "
                f"({self.max_lifetime:g}s): the managed runtime refuses that configuration"
            )
        if self.stuck_after <= 0:
            raise ValueError(f"the stuck threshold must be positive; got {self.stuck_after:g}")


@dataclass(frozen=True)
class TaskGroup:
    """Active tasks of one name."""

    name: str
    count: int
    #: Seconds since the oldest of them started.
    oldest: float


@dataclass(frozen=True)
class Tasks:
    """What the agent tells about its work: its activity route, or its metrics."""

    queued: int = 0
    running: int = 0
    groups: tuple[TaskGroup, ...] = ()
    overdue: int = 0
    #: Background tasks finished since the agent started (a counter).
    finished: float = 0.0
    #: Invocations answered since the agent started (a counter).
    invocations: float = 0.0
    in_flight: int = 0
    #: The active tasks' ids, where the agent tells them (its activity route).
    ids: frozenset[object] = frozenset()

    @property
    def active(self) -> int:
        return self.queued + self.running

    def progress_key(self) -> tuple[object, ...]:
        """Changes whenever a task starts, moves from queued to running, or finishes."""
        names = tuple(sorted((group.name, group.count) for group in self.groups))
        return (self.queued, self.running, names, self.finished, self.ids)


@dataclass(frozen=True)
class Probe:
    """What one poll saw at time ``at`` (unix seconds)."""

    at: float
    #: ``Healthy`` or ``HealthyBusy``; ``None`` when /ping gave no valid answer.
    status: str | None = None
    #: ``time_of_last_update``: when the agent's status last changed.
    changed_at: float | None = None
    #: Why there is no status.
    error: str | None = None
    #: ``None`` when the agent's tasks cannot be seen; ``tasks_note`` says why.
    tasks: Tasks | None = None
    tasks_note: str | None = None
    #: The session id and last invocation time that ``invoke`` recorded for this agent.
    session_id: str | None = None
    last_invocation: float | None = None


@dataclass(frozen=True)
class Ending:
    """When and why the managed runtime would have ended the session."""

    at: float
    reason: str
    busy: bool
    message: str


@dataclass(frozen=True)
class View:
    """Everything ``monitor`` shows after one poll."""

    probe: Probe
    settings: Settings
    #: When the simulated session started; ``None`` until the agent first answered.
    started_at: float | None = None
    #: Last invocation seen (through ``invoke`` or the metrics).
    last_invocation: float | None = None
    #: Seconds left before the idle timeout; ``None`` while it is held (``idle_hold`` says why).
    idle_left: float | None = None
    idle_hold: str | None = None
    lifetime_left: float | None = None
    #: Seconds of HealthyBusy with no task starting or finishing.
    busy_unchanged_for: float | None = None
    stuck: bool = False
    ended: Ending | None = None
    #: Things that happened at this poll, each said once.
    events: tuple[str, ...] = field(default_factory=tuple)


class SimulatedSession:
    """Replays the managed runtime's session timers over a sequence of probes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session_id: str | None = None
        # Baselines that outlive sessions: they tell new invocations from those already seen.
        self._seen_state_invocation: float | None = None
        self._seen_metric_invocations: float | None = None
        # Per session (reset by _begin):
        self.started_at: float | None = None
        self.ended: Ending | None = None
        self.last_invocation: float | None = None
        self._lost = False
        self._changed_at: float | None = None
        self._active_at: float | None = None
        self._unchanged_since: float | None = None
        self._progress: tuple[object, ...] | None = None
        self._stuck_said = False

    def _begin(self, at: float) -> None:
        self.started_at = at
        self.ended = None
        self.last_invocation = None
        self._lost = False
        self._changed_at = None
        self._active_at = None
        self._unchanged_since = None
        self._progress = None
        self._stuck_said = False

    def observe(self, probe: Probe) -> View:
        events: list[str] = []
        now = probe.at
        if probe.status is None:
            if self.started_at is not None and not self._lost:
                self._lost = True
                events.append(
                    f"The agent stopped answering /ping ({probe.error}); when it answers again, "
                    "that is a new session (a restarted agent is a new microVM)."
                )
            return View(probe, self.settings, events=tuple(events))

        invoked_at = self._new_invocation(probe)
        if self.started_at is None:
            self._begin(now)
            events.append(f"Session started at {clock(now)}: the agent answered /ping.")
        elif self._lost:
            self._begin(now)
            events.append(f"New session at {clock(now)}: the agent answers /ping again.")
        elif (
            probe.session_id
            and self.session_id
            and probe.session_id != self.session_id
            # Before this session's first invocation, the id ``invoke`` kept from
            # earlier is no session's: the first invocation's id names this one,
            # whose lifetime runs on.
            and self.last_invocation is not None
        ):
            self._begin(now)
            events.append(
                f"New session at {clock(now)}: invoke now uses session id {probe.session_id}, "
                "which the managed runtime would give a microVM of its own."
            )
        elif self.ended is not None and invoked_at is not None and invoked_at > self.ended.at:
            self._begin(now)
            events.append(
                f"New session at {clock(now)}: an invocation after the end starts a new microVM "
                "(the agent's memory would start empty)."
            )
        if probe.session_id:
            self.session_id = probe.session_id
        assert self.started_at is not None
        if invoked_at is not None and invoked_at >= self.started_at:
            self.last_invocation = max(self.last_invocation or invoked_at, invoked_at)

        if probe.changed_at is not None:
            # The latest change seen: under gunicorn -w N each worker reports its own
            # time_of_last_update, and answers alternate between them.
            self._changed_at = max(self._changed_at or probe.changed_at, probe.changed_at)
        settings = self.settings
        busy = probe.status == HEALTHY_BUSY
        in_flight = probe.tasks.in_flight if probe.tasks is not None else 0
        idle_left: float | None = None
        hold: str | None = None
        lifetime_left: float | None = None
        unchanged: float | None = None
        stuck = False
        if self.ended is None:
            lifetime_left = settings.max_lifetime - (now - self.started_at)
            idle_since = self.started_at
            if busy:
                hold = "held while HealthyBusy"
            elif in_flight:
                hold = f"held: {in_flight} invocation(s) in progress"
                self._active_at = now
            else:
                idle_since = max(
                    self.started_at,
                    self.last_invocation or 0.0,
                    self._changed_at or 0.0,
                    self._active_at or 0.0,
                )
                idle_left = settings.idle_timeout - (now - idle_since)
            if lifetime_left <= 0:
                self._end(self.started_at + settings.max_lifetime, "maximum lifetime", busy, events)
            elif idle_left is not None and idle_left <= 0:
                self._end(idle_since + settings.idle_timeout, "idle timeout", False, events)
            else:
                unchanged, stuck = self._stuck(probe, busy, lifetime_left, events)
        if self.ended is not None:
            idle_left = lifetime_left = None
        return View(
            probe,
            settings,
            started_at=self.started_at,
            last_invocation=self.last_invocation,
            idle_left=idle_left,
            idle_hold=hold,
            lifetime_left=lifetime_left,
            busy_unchanged_for=unchanged,
            stuck=stuck,
            ended=self.ended,
            events=tuple(events),
        )

    def _new_invocation(self, probe: Probe) -> float | None:
        """The time of an invocation seen for the first time at this probe, if any."""
        seen: float | None = None
        last = probe.last_invocation
        if last is not None and last != self._seen_state_invocation:
            if self._seen_state_invocation is not None or self.started_at is not None:
                seen = last
            self._seen_state_invocation = last
        if probe.tasks is not None:
            count = probe.tasks.invocations
            previous = self._seen_metric_invocations
            if previous is not None and count > previous:
                seen = max(seen or probe.at, probe.at)
            self._seen_metric_invocations = count
        return seen

    def _stuck(
        self, probe: Probe, busy: bool, lifetime_left: float, events: list[str]
    ) -> tuple[float | None, bool]:
        """Seconds of HealthyBusy with no task progress, and whether that is past the threshold."""
        if not busy:
            self._unchanged_since = None
            self._progress = None
            self._stuck_said = False
            return None, False
        assert self.started_at is not None
        now = probe.at
        key = (self._changed_at, probe.tasks.progress_key() if probe.tasks is not None else None)
        if self._unchanged_since is None:
            self._unchanged_since = max(self.started_at, self._changed_at or self.started_at)
        elif key != self._progress:
            self._unchanged_since = now
            self._stuck_said = False
        self._progress = key
        unchanged = now - self._unchanged_since
        stuck = unchanged > self.settings.stuck_after
        if stuck and not self._stuck_said:
            self._stuck_said = True
            seen = (
                "no task started or finished"
                if probe.tasks is not None
                else "no change the monitor can see (it cannot see tasks without metrics)"
            )
            events.append(
                f"STUCK? HealthyBusy for {fmt_duration(unchanged)} with {seen}. The managed "
                "runtime keeps a HealthyBusy session, and bills it, until its maximum lifetime: "
                f"{fmt_duration(lifetime_left)} from now. Look for a task that is never "
                "completed (complete_async_task belongs in a finally)."
            )
        return unchanged, stuck

    def _end(self, at: float, reason: str, busy: bool, events: list[str]) -> None:
        settings = self.settings
        if reason == "idle timeout":
            why = f"idle for {fmt_duration(settings.idle_timeout)} (Healthy, and no invocation)"
        else:
            why = (
                f"it reached its maximum lifetime of {fmt_duration(settings.max_lifetime)} "
                "(counted from the session's start, never reset)"
            )
            if busy:
                why += " while still HealthyBusy: its running tasks are cut off"
        message = (
            f"SESSION ENDED at {clock(at)}: {why}. The managed runtime stops the microVM here; "
            "everything the agent holds in memory is lost. The next invocation starts a new "
            "session."
        )
        self.ended = Ending(at, reason, busy, message)
        events.append(message)
