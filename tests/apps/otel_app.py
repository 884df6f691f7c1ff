"""An agent traced with the OpenTelemetry SDK, its spans written to a file.

``OTEL_TEST_SPANS``: the file (one JSON span a line); unset, the process has no
tracer provider of its own (``opentelemetry-instrument`` sets one).
``OTEL_TEST_FLASK=1``: Flask's own instrumentation too.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from opentelemetry import baggage, metrics, trace

from agentcore_sync import BedrockAgentCoreApp

reader = None
if os.environ.get("OTEL_TEST_SPANS"):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class FileExporter(SpanExporter):
        lock = threading.Lock()

        def export(self, spans: Any) -> SpanExportResult:
            with self.lock, open(os.environ["OTEL_TEST_SPANS"], "a") as out:
                for span in spans:
                    out.write(span.to_json(indent=None) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

app = BedrockAgentCoreApp()

if os.environ.get("OTEL_TEST_FLASK") == "1":
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app)

release = threading.Event()


@app.async_task
def background_job(value: Any) -> Any:
    with trace.get_tracer("user").start_as_current_span("user work in the task"):
        release.wait(10)
    return value


@app.entrypoint
def handler(payload: dict[str, Any]) -> Any:
    action = payload.get("action")
    if action == "start":
        return {"task_id": background_job.start(payload.get("value")).task_id}
    if action == "release":
        release.set()
        return {"released": True}
    if action == "baggage":
        with trace.get_tracer("user").start_as_current_span("user span"):
            return {"session": baggage.get_baggage("session.id")}
    if action == "fail":
        raise RuntimeError("failed on purpose")
    if action == "ping_gauge":
        assert reader is not None
        data = json.loads(reader.get_metrics_data().to_json())
        points = [
            point["value"]
            for resource in data["resource_metrics"]
            for scope in resource["scope_metrics"]
            for metric in scope["metrics"]
            if metric["name"] == "agentcore.ping.status"
            for point in metric["data"]["data_points"]
        ]
        return {"points": points}
    return {"echo": payload}
