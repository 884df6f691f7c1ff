"""Project shape (SPEC §1) and the public API with its exact import paths (SPEC §2)."""

from __future__ import annotations

import configparser
import enum
import inspect
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import pytest

import agentcore_sync
from agentcore_sync import AgentCore, AgentCoreApp, BedrockAgentCoreApp, PingStatus, RequestContext

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent

# -- project shape -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "setup.cfg",
        "pyproject.toml",
        "agentcore_sync/__init__.py",
        "agentcore_sync/py.typed",
        "tests",
        "examples",
        "bench",
        "wsgi.py",
        "gunicorn.conf.py",
        "README.md",
        ".ci/run",
    ],
)
def test_project_shape(path: str) -> None:
    assert (ROOT / path).exists(), f"SPEC §1 lists {path}"


def test_ci_script_is_executable() -> None:
    script = ROOT / ".ci" / "run"
    assert script.is_file() and os.access(script, os.X_OK)


def test_pyproject_is_build_system_only() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(data) == {"build-system"}
    build = data["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    assert any(req.startswith("setuptools") for req in build["requires"])


def test_setup_cfg_metadata_dependencies_and_extras() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["name"] == "agentcore_sync"
    requires = cfg["options"]["install_requires"].lower()
    for dependency in ("flask", "waitress", "gunicorn"):
        assert dependency in requires
    extras = cfg["options.extras_require"]
    assert "test" in extras and "redis" in extras
    assert "pytest" in extras["test"]
    assert "py.typed" in cfg["options.package_data"]["agentcore_sync"]


def test_examples_are_runnable_agents() -> None:
    scripts = sorted((ROOT / "examples").glob("*.py"))
    assert scripts, "examples/ holds runnable agents"
    for script in scripts:
        text = script.read_text()
        assert "agentcore_sync" in text, script
        assert "__main__" in text, f"{script.name} runs with `python examples/{script.name}`"


# -- imports -------------------------------------------------------------------


def test_public_names_and_import_paths() -> None:
    from agentcore_sync import (  # noqa: F401 - the import itself is the test
        AgentCore,
        AgentCoreApp,
        BedrockAgentCoreApp,
        PingStatus,
        RequestContext,
    )
    from agentcore_sync.models import PingStatus as ModelsPingStatus

    assert ModelsPingStatus is PingStatus
    for name in (
        "AgentCore",
        "AgentCoreApp",
        "BedrockAgentCoreApp",
        "PingStatus",
        "RequestContext",
    ):
        assert name in agentcore_sync.__all__


def test_app_is_a_flask_app_and_the_alias_is_the_same_class() -> None:
    assert issubclass(BedrockAgentCoreApp, flask.Flask)
    assert AgentCoreApp is BedrockAgentCoreApp
    app = BedrockAgentCoreApp(configure_logging=False)
    assert isinstance(app, flask.Flask)
    rules = {rule.rule: rule.methods for rule in app.url_map.iter_rules()}
    assert "GET" in rules["/ping"]
    assert "POST" in rules["/invocations"]


def test_agentcore_is_not_a_flask_app_and_has_a_blueprint() -> None:
    agent = AgentCore(configure_logging=False)
    assert not isinstance(agent, flask.Flask)
    assert isinstance(agent.blueprint, flask.Blueprint)


def test_ping_status_is_a_str_enum() -> None:
    assert issubclass(PingStatus, str) and issubclass(PingStatus, enum.Enum)
    assert PingStatus.HEALTHY.value == "Healthy"
    assert PingStatus.HEALTHY_BUSY.value == "HealthyBusy"
    assert PingStatus("HealthyBusy") is PingStatus.HEALTHY_BUSY
    assert PingStatus.HEALTHY == "Healthy"
    assert [status.value for status in PingStatus] == ["Healthy", "HealthyBusy"]


def test_request_context_fields() -> None:
    context = RequestContext(session_id="s", request_id="r", request_headers={"A": "b"})
    assert (context.session_id, context.request_id, context.request_headers) == (
        "s",
        "r",
        {"A": "b"},
    )
    assert RequestContext().request is None


# -- every method on both classes ----------------------------------------------

METHODS = [
    "entrypoint",
    "ping",
    "async_task",
    "add_async_task",
    "complete_async_task",
    "get_async_task_info",
    "get_current_ping_status",
    "force_ping_status",
    "clear_forced_ping_status",
    "run",
    "submit",
    "get_task_result",
]


def make_app() -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(configure_logging=False)


def make_mounted() -> AgentCore:
    agent = AgentCore(configure_logging=False)
    host = flask.Flask("host")
    host.register_blueprint(agent.blueprint)
    agent.test_client = host.test_client  # type: ignore[attr-defined]
    return agent


RUNTIMES = pytest.mark.parametrize("make", [make_app, make_mounted], ids=["app", "agentcore"])


@RUNTIMES
def test_both_classes_offer_every_method(make: Callable[[], Any]) -> None:
    runtime = make()
    for name in METHODS:
        assert callable(getattr(runtime, name)), name


def test_run_signature() -> None:
    for cls in (BedrockAgentCoreApp, AgentCore):
        params = inspect.signature(cls.run).parameters
        assert list(params)[:3] == ["self", "port", "host"]
        assert params["host"].default is None
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@RUNTIMES
def test_decorators_return_the_function_and_behave_the_same(make: Callable[[], Any]) -> None:
    runtime = make()

    def handler(payload):
        return {"status": runtime.get_current_ping_status().value, "got": payload}

    def custom():
        return PingStatus.HEALTHY

    assert runtime.entrypoint(handler) is handler
    assert runtime.ping(custom) is custom
    client = runtime.test_client()
    assert client.post("/invocations", json={"a": 1}).json == {"status": "Healthy", "got": {"a": 1}}

    @runtime.async_task
    def bare():
        return runtime.get_async_task_info()

    @runtime.async_task(name="renamed", metadata={"team": "x"})
    def configured():
        return runtime.get_async_task_info()

    info = bare()
    assert info["active_count"] == 1
    assert info["running_jobs"][0]["name"] == "bare"
    info = configured()
    assert info["running_jobs"][0]["name"] == "renamed"
    assert info["running_jobs"][0]["metadata"] == {"team": "x"}
    assert runtime.get_async_task_info() == {"active_count": 0, "running_jobs": []}


@RUNTIMES
def test_task_and_status_methods(make: Callable[[], Any]) -> None:
    runtime = make()
    client = runtime.test_client()
    assert runtime.get_current_ping_status() is PingStatus.HEALTHY
    task_id = runtime.add_async_task("job", {"k": 1})
    assert isinstance(task_id, int)
    assert runtime.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    assert client.get("/ping").json["status"] == "HealthyBusy"
    info = runtime.get_async_task_info()
    assert info["active_count"] == 1
    job = info["running_jobs"][0]
    assert job["name"] == "job" and isinstance(job["duration"], float) and job["duration"] >= 0
    assert runtime.complete_async_task(task_id) is True
    assert runtime.complete_async_task(task_id) is False
    assert runtime.get_current_ping_status() is PingStatus.HEALTHY

    runtime.force_ping_status(PingStatus.HEALTHY_BUSY)
    assert client.get("/ping").json["status"] == "HealthyBusy"
    runtime.clear_forced_ping_status()
    assert client.get("/ping").json["status"] == "Healthy"


@RUNTIMES
def test_active_tasks_compat(make: Callable[[], Any]) -> None:
    """Code from the official docs tests ``app._active_tasks`` for truthiness and len()."""
    runtime = make()
    assert not runtime._active_tasks
    assert len(runtime._active_tasks) == 0
    first = runtime.add_async_task("a")
    second = runtime.add_async_task("b")
    assert runtime._active_tasks
    assert len(runtime._active_tasks) == 2
    runtime.complete_async_task(first)
    runtime.complete_async_task(second)
    assert not runtime._active_tasks


def test_entrypoint_replaces_the_previous_handler() -> None:
    app = make_app()
    app.entrypoint(lambda payload: {"first": True})
    app.entrypoint(lambda payload: {"second": True})
    assert app.test_client().post("/invocations", json={}).json == {"second": True}
