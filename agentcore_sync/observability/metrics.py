"""Prometheus metrics of a runtime, on a path of the user's choosing (off by default).

``enable_metrics(app, "/metrics")`` exposes:

- ``agentcore_active_tasks{state}``: tasks keeping the agent busy, ``queued`` or
  ``running`` (every worker's, under a multi-worker gunicorn server);
- ``agentcore_active_tasks_by_name{name}`` and
  ``agentcore_active_task_oldest_seconds{name}``: the same by task name, with
  the age of the oldest, which is what tells a stuck task from a busy agent;
- ``agentcore_overdue_tasks``: tasks past their maximum duration;
- ``agentcore_task_duration_seconds{status}``: durations of finished
  background tasks (``.start()``/``submit``), by outcome;
- ``agentcore_invocations_total{outcome,code}`` and
  ``agentcore_invocation_duration_seconds``: invocations answered, by outcome
  (``success``, ``client_error``, ``rejected`` = 429/503, ``server_error``);
  for a stream, the time until it began;
- ``agentcore_invocations_in_flight``;
- ``agentcore_ping_status{status}``: 1 for the status ``/ping`` reports now.

Gauges are computed when scraped, so they are never stale. Each runtime has a
registry of its own (not prometheus_client's global one): many apps in one
process do not collide. Scraping is not an invocation: it does not reset the
managed runtime's idle timer, which is why ``agentcore-sync monitor`` reads
tasks here.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, request

from ..models import PingStatus, TaskState

if TYPE_CHECKING:
    from ..core.runtime import Runtime

INSTALL_HINT = (
    "Prometheus metrics need the prometheus_client package: pip install 'agentcore_sync[metrics]'"
)

#: From a tenth of a second to the managed runtime's 8-hour limit for async jobs.
TASK_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800)
#: Up to the managed runtime's 15-minute limit for a synchronous request.
INVOCATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

_RESERVED_PATHS = {"/ping", "/invocations"}


class MetricsUnavailable(ImportError):
    """prometheus_client is not installed."""


def require_prometheus() -> Any:
    """The ``prometheus_client`` module, or an error that names the extra to install."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise MetricsUnavailable(INSTALL_HINT) from exc
    return prometheus_client


def outcome(status_code: int) -> str:
    """The outcome an invocation's status code stands for."""
    if status_code < 400:
        return "success"
    if status_code in (429, 503):
        return "rejected"  # admission control: too many invocations at once
    if status_code < 500:
        return "client_error"
    return "server_error"


class RuntimeMetrics:
    """The metrics of one runtime: its registry, its listeners, its blueprints."""

    def __init__(self, runtime: Runtime) -> None:
        prometheus = require_prometheus()
        self.registry = prometheus.CollectorRegistry()
        self.invocations = prometheus.Counter(
            "agentcore_invocations",
            "Invocations answered, by outcome and HTTP status code.",
            ["outcome", "code"],
            registry=self.registry,
        )
        self.invocation_seconds = prometheus.Histogram(
            "agentcore_invocation_duration_seconds",
            "Time to answer an invocation (for a stream: until it began).",
            buckets=INVOCATION_BUCKETS,
            registry=self.registry,
        )
        self.task_seconds = prometheus.Histogram(
            "agentcore_task_duration_seconds",
            "Durations of finished background tasks, by final status.",
            ["status"],
            buckets=TASK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(weakref.ref(runtime)))
        self.blueprints: dict[str, Blueprint] = {}
        runtime.invocation_listeners.append(self.on_invocation)
        runtime.task_listeners.append(self.on_task)

    def on_invocation(self, status_code: int, seconds: float) -> None:
        self.invocations.labels(outcome(status_code), str(status_code)).inc()
        self.invocation_seconds.observe(seconds)

    def on_task(self, record: dict[str, Any]) -> None:
        duration = record.get("duration")
        if duration is not None:
            self.task_seconds.labels(str(record.get("status"))).observe(max(0.0, duration))

    def exposition(self, accept: str | None) -> Response:
        """The registry in the text format the scraper asked for (Prometheus or OpenMetrics)."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return Response(encoder(self.registry), headers={"Content-Type": content_type})


class _LiveCollector:
    """Gauges read from the runtime at scrape time."""

    def __init__(self, runtime: weakref.ref[Runtime]) -> None:
        self._runtime = runtime

    def describe(self) -> list[Any]:
        return []  # registering must not compute the status

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        runtime = self._runtime()
        if runtime is None:
            return
        jobs = runtime.get_async_task_info()["running_jobs"]
        states = {TaskState.QUEUED: 0, TaskState.RUNNING: 0}
        names: dict[str, list[float]] = {}
        overdue = 0
        for job in jobs:
            state = TaskState(job.get("state", TaskState.RUNNING))
            states[state] += 1
            names.setdefault(str(job.get("name")), []).append(float(job.get("duration") or 0.0))
            overdue += bool(job.get("overdue"))

        active = GaugeMetricFamily(
            "agentcore_active_tasks", "Tasks keeping the agent busy, by state.", labels=["state"]
        )
        for state, count in sorted(states.items()):
            active.add_metric([state], count)
        yield active
        by_name = GaugeMetricFamily(
            "agentcore_active_tasks_by_name", "Active tasks, by task name.", labels=["name"]
        )
        oldest = GaugeMetricFamily(
            "agentcore_active_task_oldest_seconds",
            "Seconds since the oldest active task of each name started (or was queued).",
            labels=["name"],
        )
        for name, durations in sorted(names.items()):
            by_name.add_metric([name], len(durations))
            oldest.add_metric([name], max(durations))
        yield by_name
        yield oldest
        yield GaugeMetricFamily(
            "agentcore_overdue_tasks", "Active tasks past their maximum duration.", value=overdue
        )
        yield GaugeMetricFamily(
            "agentcore_invocations_in_flight",
            "Invocations being answered now.",
            value=runtime.limiter.in_flight,
        )
        # The custom @ping function runs for /ping only: its last answer stands here.
        current = runtime.ping_status.current_without_custom()
        ping = GaugeMetricFamily(
            "agentcore_ping_status", "1 for the status /ping reports now.", labels=["status"]
        )
        for status in PingStatus:
            ping.add_metric([status.value], 1 if status is current else 0)
        yield ping


def check_path(path: str) -> None:
    """Raise ``ValueError`` unless ``path`` can serve metrics beside the contract's routes."""
    if not path.startswith("/") or path.rstrip("/") in _RESERVED_PATHS:
        raise ValueError(
            f"metrics path {path!r} must start with '/' and not be /ping or /invocations"
        )


_lock = threading.Lock()
_metrics: weakref.WeakKeyDictionary[Runtime, RuntimeMetrics] = weakref.WeakKeyDictionary()
_names = itertools.count(1)


def enable_metrics(agent: Any, path: str = "/metrics") -> Blueprint:
    """Serve ``runtime``'s Prometheus metrics at ``path``; returns the blueprint serving them.

    A ``BedrockRuntimeApp`` (a Flask app) gets the route at once. For an
    ``AgentCore`` mounted into an app of your own, register the returned
    blueprint there: ``flask_app.register_blueprint(enable_metrics(agent))``.
    Calling it again for the same path returns the same blueprint.
    """
    check_path(path)
    runtime: Runtime = getattr(agent, "runtime", agent)
    with _lock:
        metrics = _metrics.get(runtime)
        if metrics is None:
            metrics = _metrics[runtime] = RuntimeMetrics(runtime)
        blueprint = metrics.blueprints.get(path)
        if blueprint is not None:
            return blueprint
        blueprint = Blueprint(f"agentcore_metrics_{next(_names)}", __name__)
        served = metrics

        @blueprint.get(path)
        def scrape() -> Response:
            return served.exposition(request.headers.get("Accept"))

        metrics.blueprints[path] = blueprint
    if isinstance(agent, Flask) and blueprint.name not in agent.blueprints:
        agent.register_blueprint(blueprint)
    return blueprint


def metrics_registry(agent: Any) -> Any:
    """The ``CollectorRegistry`` of an agent's metrics (to add your own), once enabled."""
    metrics = _metrics.get(getattr(agent, "runtime", agent))
    if metrics is None:
        raise LookupError("metrics are not enabled on this runtime: call enable_metrics first")
    return metrics.registry
