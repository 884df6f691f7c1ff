"""OpenTelemetry traces and the ping status metric, for AgentCore Observability.

- A span per invocation, ``agentcore.invocation``, with the session and request
  ids; the session id is also set as the ``session.id`` baggage while the
  handler runs, which AgentCore Observability groups traces by. Under a server
  span of another instrumentation (``opentelemetry-instrumentation-flask``) it
  is that span's child; alone, it is the server span itself, so that a request
  never has two.
- A span per background task, ``agentcore.task NAME``: a trace of its own (the
  task outlives the request), linked to the invocation that started it.
- ``agentcore.ping.status``, an observable gauge: 1 while ``HealthyBusy``.

Payloads and results are never put in spans. Everything goes through the
OpenTelemetry API, so it costs a no-op until a tracer provider is set
(``opentelemetry-instrument``, or the application's own setup); the runtime
installs it when a server starts serving, where the API is importable
(``agentcore_sync[otel]``), unless ``AGENTCORE_SYNC_OTEL=0``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.context import request_id_var, session_id_var

if TYPE_CHECKING:
    from ..core.context import RequestContext
    from ..core.runtime import Runtime

INSTRUMENTATION = "agentcore_sync"
OFF = ("0", "false", "no", "off")


def available() -> bool:
    """Whether tracing is installed and not turned off."""
    if os.environ.get("AGENTCORE_SYNC_OTEL", "").strip().lower() in OFF:
        return False
    return importlib.util.find_spec("opentelemetry") is not None


def enable_tracing(runtime: Runtime) -> Tracing | None:
    """Trace ``runtime``'s invocations and tasks, once; None where unavailable."""
    for observer in runtime.observers:
        if isinstance(observer, Tracing):
            return observer
    if not available():
        return None
    tracing = Tracing(runtime)
    runtime.observers.append(tracing)
    return tracing


class Tracing:
    """The spans of one runtime (a ``core.observers.Observer``)."""

    def __init__(self, runtime: Runtime) -> None:
        from opentelemetry import metrics, trace

        self._trace = trace
        self._tracer = trace.get_tracer(INSTRUMENTATION)
        status = runtime.ping_status

        def ping_status(options: Any) -> Iterator[Any]:
            busy = status.current_without_custom().value == "HealthyBusy"
            yield metrics.Observation(1 if busy else 0)

        metrics.get_meter(INSTRUMENTATION).create_observable_gauge(
            "agentcore.ping.status",
            callbacks=[ping_status],
            description="1 while the agent reports HealthyBusy, 0 while Healthy",
        )

    def invocation_started(self, context: RequestContext) -> Any:
        from opentelemetry import baggage
        from opentelemetry import context as otel_context

        trace = self._trace
        parent = trace.get_current_span()
        nested = parent.get_span_context().is_valid
        span = self._tracer.start_span(
            "agentcore.invocation",
            kind=trace.SpanKind.INTERNAL if nested else trace.SpanKind.SERVER,
            attributes=_ids(context.session_id, context.request_id),
        )
        current = trace.set_span_in_context(span)
        if context.session_id:
            current = baggage.set_baggage("session.id", context.session_id, current)
        return span, otel_context.attach(current)

    def invocation_finished(self, token: Any, status: int) -> None:
        from opentelemetry import context as otel_context

        span, attached = token
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()
        otel_context.detach(attached)

    def task_started(self, task_id: int, name: str) -> Any:
        from opentelemetry import context as otel_context

        trace = self._trace
        starter = trace.get_current_span().get_span_context()
        links = [trace.Link(starter)] if starter.is_valid else []
        span = self._tracer.start_span(
            f"agentcore.task {name}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a trace of its own
            links=links,
            attributes={
                "agentcore.task.id": task_id,
                "agentcore.task.name": name,
                **_ids(session_id_var.get(None), request_id_var.get(None)),
            },
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    def task_finished(self, token: Any, status: str, error: str | None) -> None:
        from opentelemetry import context as otel_context

        span, attached = token
        span.set_attribute("agentcore.task.status", status)
        if error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end()
        otel_context.detach(attached)


def _ids(session_id: str | None, request_id: str | None) -> dict[str, str]:
    ids = {}
    if session_id:
        ids["session.id"] = session_id
    if request_id:
        ids["agentcore.request.id"] = request_id
    return ids
