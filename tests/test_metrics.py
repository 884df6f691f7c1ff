"""Prometheus metrics (``observability.metrics``): what they count, where they are served.

Scrapes are parsed with prometheus_client's own parser, so the exposition is
checked to be valid, not just to contain some text.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import flask
import pytest
import requests
import servers
from prometheus_client.parser import text_string_to_metric_families

from agentcore_sync import AgentCore, BedrockAgentCoreApp
from agentcore_sync.observability.metrics import (
    MetricsUnavailable,
    enable_metrics,
    metrics_registry,
    outcome,
)

pytestmark = pytest.mark.e2e


def scrape(client: Any, path: str = "/metrics") -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple], float], metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def eventually(client: Any, expected: float, metric: str, /, **labels: str) -> None:
    """Scrape until ``metric{labels}`` is ``expected`` (background threads start on their own)."""
    deadline = time.monotonic() + 5
    while (found := value(scrape(client), metric, **labels)) != expected:
        assert time.monotonic() < deadline, f"{metric}{labels} is {found}, not {expected}"
        time.sleep(0.01)


@pytest.fixture
def app():
    agent = BedrockAgentCoreApp(result_store="memory://", task_threads=1)
    yield agent
    agent.shutdown(grace=5)


def test_off_by_default(app: BedrockAgentCoreApp) -> None:
    assert app.test_client().get("/metrics").status_code == 404


def test_ping_status_and_active_tasks_follow_the_runtime(app: BedrockAgentCoreApp) -> None:
    blueprint = enable_metrics(app, "/metrics")
    assert blueprint.name in app.blueprints, "a BedrockAgentCoreApp serves them at once"
    client = app.test_client()
    samples = scrape(client)
    assert value(samples, "agentcore_ping_status", status="Healthy") == 1
    assert value(samples, "agentcore_ping_status", status="HealthyBusy") == 0
    assert value(samples, "agentcore_active_tasks", state="running") == 0
    assert value(samples, "agentcore_active_tasks", state="queued") == 0

    first = app.add_async_task("index")
    app.add_async_task("index")
    time.sleep(0.05)
    samples = scrape(client)
    assert value(samples, "agentcore_ping_status", status="HealthyBusy") == 1
    assert value(samples, "agentcore_active_tasks", state="running") == 2
    assert value(samples, "agentcore_active_tasks_by_name", name="index") == 2
    assert value(samples, "agentcore_active_task_oldest_seconds", name="index") >= 0.05

    app.complete_async_task(first)
    samples = scrape(client)
    assert value(samples, "agentcore_active_tasks_by_name", name="index") == 1
    app.force_ping_status("Healthy")
    assert value(scrape(client), "agentcore_ping_status", status="Healthy") == 1, "forced too"


def test_queued_and_overdue_tasks(app: BedrockAgentCoreApp) -> None:
    enable_metrics(app)
    release = threading.Event()
    running = app.submit(release.wait, 10)  # task_threads=1: the next one waits
    queued = app.submit(release.wait, 10)
    eventually(app.test_client(), 1, "agentcore_active_tasks", state="running")
    assert value(scrape(app.test_client()), "agentcore_active_tasks", state="queued") == 1
    release.set()
    running.result(5), queued.result(5)

    overdue_app = BedrockAgentCoreApp(result_store="memory://", max_task_duration=0.05)
    try:
        enable_metrics(overdue_app)
        overdue_app.add_async_task("slow")
        time.sleep(0.1)
        assert value(scrape(overdue_app.test_client()), "agentcore_overdue_tasks") == 1
    finally:
        overdue_app.shutdown(grace=1)


def test_background_task_durations_by_final_status(app: BedrockAgentCoreApp) -> None:
    enable_metrics(app)

    def work(seconds: float, fail: bool = False) -> str:
        time.sleep(seconds)
        if fail:
            raise RuntimeError("no")
        return "done"

    app.submit(work, 0.2).result(5)
    with pytest.raises(RuntimeError):
        app.submit(work, 0, True).result(5)
    # The record (and the listener) comes right after the result.
    eventually(app.test_client(), 1, "agentcore_task_duration_seconds_count", status="failed")
    samples = scrape(app.test_client())
    assert value(samples, "agentcore_task_duration_seconds_count", status="succeeded") == 1
    assert value(samples, "agentcore_task_duration_seconds_sum", status="succeeded") >= 0.2
    assert (
        value(samples, "agentcore_task_duration_seconds_bucket", status="succeeded", le="0.1") == 0
    )
    assert (
        value(samples, "agentcore_task_duration_seconds_bucket", status="succeeded", le="0.5") == 1
    )


def test_invocations_by_outcome(app: BedrockAgentCoreApp) -> None:
    enable_metrics(app)

    @app.entrypoint
    def main(payload):
        if payload.get("fail"):
            raise RuntimeError("failed")
        return {"ok": True}

    client = app.test_client()
    assert client.post("/invocations", json={}).status_code == 200
    assert client.post("/invocations", json={}).status_code == 200
    assert client.post("/invocations", data=b"{not json").status_code == 400
    assert client.post("/invocations", json={"fail": True}).status_code == 500
    client.get("/ping")
    client.get("/metrics")
    samples = scrape(client)
    assert value(samples, "agentcore_invocations_total", outcome="success", code="200") == 2
    assert value(samples, "agentcore_invocations_total", outcome="client_error", code="400") == 1
    assert value(samples, "agentcore_invocations_total", outcome="server_error", code="500") == 1
    assert value(samples, "agentcore_invocation_duration_seconds_count") == 4, (
        "pings and scrapes are not invocations"
    )
    assert value(samples, "agentcore_invocations_in_flight") == 0


def test_outcomes_of_status_codes() -> None:
    assert [outcome(code) for code in (200, 204, 304, 400, 404, 413, 429, 500, 503)] == [
        "success", "success", "success", "client_error", "client_error", "client_error",
        "rejected", "server_error", "rejected",
    ]  # fmt: skip


def test_an_agent_mounted_in_an_app_of_ones_own() -> None:
    agent = AgentCore(result_store="memory://")
    try:
        blueprint = enable_metrics(agent, "/metrics")
        site = flask.Flask(__name__)
        site.register_blueprint(agent.blueprint, url_prefix="/agent")
        site.register_blueprint(blueprint, url_prefix="/ops")
        client = site.test_client()
        agent.add_async_task("mounted")
        samples = scrape(client, "/ops/metrics")
        assert value(samples, "agentcore_active_tasks_by_name", name="mounted") == 1
        assert client.get("/agent/ping").get_json()["status"] == "HealthyBusy"
    finally:
        agent.shutdown(grace=1)


def test_each_runtime_has_its_own_registry_and_enabling_twice_is_harmless() -> None:
    one = BedrockAgentCoreApp(result_store="memory://")
    two = BedrockAgentCoreApp(result_store="memory://")
    try:
        for agent in (one, two):
            agent.entrypoint(lambda payload: payload)
        assert enable_metrics(one) is enable_metrics(one), "same path: the same blueprint"
        enable_metrics(two)
        enable_metrics(one, "/internal/metrics")
        one.test_client().post("/invocations", json={})
        assert (
            value(
                scrape(one.test_client()),
                "agentcore_invocations_total",
                outcome="success",
                code="200",
            )
            == 1
        )
        assert (
            value(
                scrape(one.test_client(), "/internal/metrics"),
                "agentcore_invocations_total",
                outcome="success",
                code="200",
            )
            == 1
        )
        assert (
            value(
                scrape(two.test_client()),
                "agentcore_invocations_total",
                outcome="success",
                code="200",
            )
            is None
        )
        assert metrics_registry(one) is not metrics_registry(two)
    finally:
        one.shutdown(grace=1)
        two.shutdown(grace=1)


def test_openmetrics_when_the_scraper_asks_for_it(app: BedrockAgentCoreApp) -> None:
    enable_metrics(app)
    response = app.test_client().get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_bad_paths_and_a_missing_prometheus_client(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in ("metrics", "/ping", "/invocations"):
        with pytest.raises(
            ValueError, match="must start with '/' and not be /ping or /invocations"
        ):
            enable_metrics(app, path)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(
        MetricsUnavailable, match=r"pip install 'agentcore_sync\[metrics\]'"
    ) as raised:
        enable_metrics(app)
    assert isinstance(raised.value, ImportError)


def test_metrics_of_a_real_server(tmp_path) -> None:
    with servers.serving(servers.waitress("cli_app:app", tmp_path)) as server:
        requests.post(
            server.url + "/invocations", json={"action": "start", "seconds": 0.2}, timeout=5
        )
        response = requests.get(server.url + "/metrics", timeout=5)
        assert response.status_code == 200
        families = {family.name for family in text_string_to_metric_families(response.text)}
        assert {
            "agentcore_active_tasks", "agentcore_active_tasks_by_name",
            "agentcore_active_task_oldest_seconds", "agentcore_overdue_tasks",
            "agentcore_task_duration_seconds", "agentcore_invocations",
            "agentcore_invocation_duration_seconds", "agentcore_invocations_in_flight",
            "agentcore_ping_status",
        } <= families  # fmt: skip
        assert 'agentcore_invocations_total{code="200",outcome="success"} 1.0' in response.text
