"""One poll of an agent as the managed runtime sees it: ``/ping`` and its activity.

Used by ``monitor`` and by the emulator's session keeper.

``/ping`` only tells the status. The running tasks come from the agent's
activity route (``Runtime.activity``, answered to this machine only) or, for an
agent elsewhere, its Prometheus metrics (``serve --metrics-path /metrics``):
either is a plain GET, not an invocation, so watching never resets the idle
timer it is watching. (The ``job_status`` debug action would be an invocation,
and needs ``debug=True``.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..web.blueprint import ACTIVITY_PATH
from .client import AgentClient, AgentUnreachable
from .lifecycle import HEALTHY, HEALTHY_BUSY, Probe, TaskGroup, Tasks

#: A session id and the time of the last invocation, either unknown.
Recorded = tuple[str | None, float | None]

#: How long a poll waits for /ping: a healthy agent answers in milliseconds.
PING_TIMEOUT = 5.0
#: While the agent has no metrics, look for them again this often (seconds).
METRICS_RETRY = 10.0


class AgentProbe:
    """Polls one agent; ``poll()`` never raises for anything the agent does."""

    def __init__(
        self,
        base_url: str,
        metrics_path: str | None,
        timeout: float = PING_TIMEOUT,
        recorded: Callable[[], Recorded] | None = None,
    ) -> None:
        self.base_url = base_url
        #: The session id and last invocation that the caller knows of (``invoke``'s
        #: saved state for ``monitor``; the emulator's own count for its sessions).
        self.recorded = recorded
        self.metrics_path = metrics_path or None
        self.timeout = timeout
        self._client = AgentClient(base_url)
        self._metrics_missing_until = 0.0
        self._metrics_note: str | None = None
        # Whether the agent answers its activity route (until it does not).
        self._activity = True
        self._admitted: dict[int, float] = {}

    def poll(self) -> Probe:
        at = time.time()
        session_id, last_invocation = self.recorded() if self.recorded else (None, None)
        session = {"session_id": session_id, "last_invocation": last_invocation}
        try:
            status, changed_at = self._ping()
        except (AgentUnreachable, ValueError) as exc:
            return Probe(at, error=str(exc), **session)
        tasks, note = self._tasks(at)
        return Probe(at, status, changed_at, tasks=tasks, tasks_note=note, **session)

    def _ping(self) -> tuple[str, float]:
        reply = self._client.get("/ping", self.timeout, accept="application/json")
        text = reply.read_text()
        if reply.status != 200:
            raise ValueError(f"/ping answered HTTP {reply.status}: {text[:200]}")
        try:
            body = json.loads(text)
            status = body["status"]
            changed_at = float(body["time_of_last_update"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"/ping answered something outside the contract: {text[:200]}"
            ) from None
        if status not in (HEALTHY, HEALTHY_BUSY):
            raise ValueError(f"/ping answered status {status!r}, not Healthy or HealthyBusy")
        return status, changed_at

    def _tasks(self, at: float) -> tuple[Tasks | None, str | None]:
        if self._activity:
            try:
                reply = self._client.get(ACTIVITY_PATH, self.timeout, accept="application/json")
                text = reply.read_text()
            except AgentUnreachable as exc:
                return None, f"activity unreadable: {exc}"
            if reply.status == 200:
                try:
                    activity = json.loads(text)
                    # Each gunicorn worker counts its own; the sum of the latest of each grows.
                    self._admitted[int(activity["pid"])] = float(activity["invocations_admitted"])
                    activity["invocations_admitted"] = sum(self._admitted.values())
                    return parse_activity(activity), None
                except (ValueError, KeyError, TypeError) as exc:
                    return None, f"unreadable activity at {ACTIVITY_PATH}: {exc}"
            # Not this runtime, or not on this machine: the metrics, if any.
            self._activity = False
        if self.metrics_path is None:
            return None, "not watched (monitor --metrics-path '')"
        if at < self._metrics_missing_until:
            return None, self._metrics_note
        try:
            reply = self._client.get(self.metrics_path, self.timeout, accept="text/plain")
            text = reply.read_text()
        except AgentUnreachable as exc:
            return None, f"metrics unreadable: {exc}"
        tasks: Tasks | None = None
        if reply.status == 200:
            try:
                tasks = parse_metrics(text)
            except ImportError:
                return self._missing(at, "install agentcore_sync[metrics] to read them")
            except ValueError as exc:
                return self._missing(at, f"unreadable metrics at {self.metrics_path}: {exc}")
        if tasks is None:
            return self._missing(
                at,
                f"no agentcore metrics at {self.metrics_path}: serve the agent with "
                f"--metrics-path {self.metrics_path} to see them",
            )
        return tasks, None

    def _missing(self, at: float, note: str) -> tuple[None, str]:
        self._metrics_missing_until = at + METRICS_RETRY
        self._metrics_note = note
        return None, note


def parse_activity(activity: dict[str, Any]) -> Tasks:
    """The tasks and counters in the agent's activity (``Runtime.activity``)."""
    jobs = activity["running_jobs"]
    oldest: dict[str, float] = {}
    counts: dict[str, int] = {}
    for job in jobs:
        name = str(job["name"])
        counts[name] = counts.get(name, 0) + 1
        oldest[name] = max(oldest.get(name, 0.0), float(job["duration"]))
    queued = sum(1 for job in jobs if job.get("state") == "queued")
    groups = tuple(TaskGroup(name, counts[name], oldest[name]) for name in counts)
    return Tasks(
        queued=queued,
        running=len(jobs) - queued,
        groups=tuple(sorted(groups, key=lambda group: -group.oldest)),
        overdue=sum(1 for job in jobs if job.get("overdue")),
        invocations=float(activity["invocations_admitted"]),
        in_flight=int(activity["invocations_in_flight"]),
        ids=frozenset(job.get("task_id") for job in jobs),
    )


def parse_metrics(text: str) -> Tasks | None:
    """The tasks and counters in the runtime's metrics exposition; ``None`` if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    if "agentcore_active_tasks" not in samples:
        return None

    def total(name: str) -> float:
        return sum(sample.value for sample in samples.get(name, []))

    states = {s.labels.get("state"): int(s.value) for s in samples["agentcore_active_tasks"]}
    oldest = {
        s.labels.get("name"): s.value
        for s in samples.get("agentcore_active_task_oldest_seconds", [])
    }
    groups = tuple(
        TaskGroup(str(s.labels.get("name")), int(s.value), oldest.get(s.labels.get("name"), 0.0))
        for s in samples.get("agentcore_active_tasks_by_name", [])
        if s.value > 0
    )
    return Tasks(
        queued=states.get("queued", 0),
        running=sum(count for state, count in states.items() if state != "queued"),
        groups=tuple(sorted(groups, key=lambda group: -group.oldest)),
        overdue=int(total("agentcore_overdue_tasks")),
        finished=total("agentcore_task_duration_seconds_count"),
        invocations=total("agentcore_invocations_total"),
        in_flight=int(total("agentcore_invocations_in_flight")),
    )
