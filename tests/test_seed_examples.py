"""Code copied from the seed documents runs on agentcore_sync.

The only edit made to the seeds' code is the one SPEC promises is enough:
``bedrock_agentcore.runtime`` becomes ``agentcore_sync`` in its imports. The
seeds are read at test time from ``$AGENTCORE_SYNC_SEEDS``, else from
``ROOT/../shared/seeds``; without them the tests are skipped on a laptop and
fail in CI.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import running_in_ci

from agentcore_sync import BedrockAgentCoreApp, PingStatus

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent

#: The seed's asyncio.sleep(30) and sleep(10) become 1.2 s and 0.4 s.
SLEEP_SCALE = 0.04


def seeds_dir() -> Path:
    configured = os.environ.get("AGENTCORE_SYNC_SEEDS")
    path = Path(configured) if configured else ROOT.parent / "shared" / "seeds"
    if not path.is_dir():
        message = (
            f"SEED DOCUMENTS NOT FOUND at {path} (set AGENTCORE_SYNC_SEEDS): the tests that "
            "run the seeds' code on agentcore_sync cannot run"
        )
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def python_blocks(document: str) -> list[str]:
    path = seeds_dir() / document
    if not path.is_file():
        message = f"SEED DOCUMENT {path} NOT FOUND"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)


def seed_block(document: str, *markers: str) -> str:
    """The one python block of ``document`` that contains every marker."""
    found = [block for block in python_blocks(document) if all(m in block for m in markers)]
    assert len(found) == 1, f"{document}: {len(found)} python blocks contain {markers}"
    return found[0]


def port_imports(code: str) -> str:
    """``bedrock_agentcore.runtime`` → ``agentcore_sync`` in import lines; nothing else."""
    lines = []
    for line in code.splitlines():
        if re.match(r"\s*(from|import)\s+bedrock_agentcore\.runtime\b", line):
            line = line.replace("bedrock_agentcore.runtime", "agentcore_sync", 1)
        lines.append(line)
    ported = "\n".join(lines) + "\n"
    assert "bedrock_agentcore" not in ported, "only import lines may name the official SDK"
    return ported


def run_seed(code: str, name: str, monkeypatch: pytest.MonkeyPatch, **names: Any) -> dict[str, Any]:
    """Execute seed code as a module named ``name`` (not ``__main__``: no ``app.run()``)."""
    module = types.ModuleType(name)
    module.__dict__.update(names)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(port_imports(code), f"<seed {name}>", "exec"), module.__dict__)
    return module.__dict__


@pytest.fixture
def fast_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep

    async def scaled_sleep(delay: float, result: Any = None) -> Any:
        return await real_sleep(delay * SLEEP_SCALE, result)

    monkeypatch.setattr(asyncio, "sleep", scaled_sleep)


def wait_for_status(client: Any, status: str, timeout: float = 3.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while client.get("/ping").json["status"] != status:
        assert time.monotonic() < deadline, f"/ping never became {status}"
        time.sleep(0.02)


# -- the simple agent of async-processing-example.md ---------------------------


def test_seed_simple_agent_runs_on_agentcore_sync(
    monkeypatch: pytest.MonkeyPatch, fast_sleep: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = seed_block("async-processing-example.md", "@app.async_task", "app.run()")
    assert "from bedrock_agentcore.runtime import BedrockAgentCoreApp" in code
    seed = run_seed(code, "seed_simple_agent", monkeypatch)
    app = seed["app"]
    assert isinstance(app, BedrockAgentCoreApp)
    client = app.test_client()

    info = client.post("/invocations", json={}).json
    assert info["available_actions"] == ["process", "cleanup", "status"]
    assert client.get("/ping").json["status"] == "Healthy"

    outcome: dict[str, Any] = {}

    def process() -> None:
        reply = app.test_client().post(
            "/invocations", json={"action": "process", "data_id": "sample_data"}
        )
        outcome["reply"] = (reply.status_code, reply.json)

    thread = threading.Thread(target=process)
    thread.start()
    wait_for_status(client, "HealthyBusy")
    status = client.post("/invocations", json={"action": "status"}).json
    assert status["ping_status"] == "HealthyBusy"
    assert status["active_tasks"] == 1
    assert [job["name"] for job in status["running_jobs"]] == ["process_data"]
    thread.join(10)
    assert outcome["reply"] == (200, {"message": "Processing sample_data", "status": "completed"})
    assert client.get("/ping").json["status"] == "Healthy"

    reply = client.post("/invocations", json={"action": "cleanup"})
    assert reply.json == {"message": "Cleanup completed"}
    status = client.post("/invocations", json={"action": "status"}).json
    assert status == {"ping_status": "Healthy", "active_tasks": 0, "running_jobs": []}

    printed = capsys.readouterr().out
    assert "Processing data: sample_data" in printed
    assert "Completed processing: sample_data" in printed
    assert "Cleanup completed" in printed


# -- snippets of ping-status-and-background-tasks.md ---------------------------

PING_DOC = "ping-status-and-background-tasks.md"


@pytest.fixture
def app() -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(configure_logging=False)


def test_seed_forced_status_snippet(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = seed_block(PING_DOC, "app.force_ping_status(PingStatus.HEALTHY_BUSY)")
    assert "from bedrock_agentcore.runtime.models import PingStatus" in code
    # Note the status right after each call the snippet makes.
    seen: list[tuple[str, PingStatus]] = []
    for name in ("force_ping_status", "clear_forced_ping_status"):
        method = getattr(app, name)

        def noting(*args: Any, _method: Any = method, _name: str = name) -> None:
            _method(*args)
            seen.append((_name, app.get_current_ping_status()))

        monkeypatch.setattr(app, name, noting)
    seed = run_seed(code, "seed_forced", monkeypatch, app=app)
    assert seed["PingStatus"] is PingStatus
    assert seen == [
        ("force_ping_status", PingStatus.HEALTHY_BUSY),
        ("clear_forced_ping_status", PingStatus.HEALTHY),
    ]


def test_missing_seeds_skip_on_a_laptop_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTCORE_SYNC_SEEDS", str(tmp_path / "no-seeds-here"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="SEED DOCUMENTS NOT FOUND"):
        seeds_dir()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="SEED DOCUMENTS NOT FOUND"):
        seeds_dir()


def test_seed_custom_dependency_check_snippet(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = seed_block(PING_DOC, "def custom_ping_status():")
    pool = types.SimpleNamespace(active_connections=10)
    depth = {"value": 0}
    queue = types.SimpleNamespace(depth=lambda: depth["value"])
    run_seed(
        code, "seed_custom", monkeypatch, app=app, db_connection_pool=pool, message_queue=queue
    )
    client = app.test_client()
    assert client.get("/ping").json["status"] == "Healthy"
    task_id = app.add_async_task("work")
    assert client.get("/ping").json["status"] == "HealthyBusy"
    app.complete_async_task(task_id)
    pool.active_connections = 95
    assert client.get("/ping").json["status"] == "HealthyBusy"
    pool.active_connections = 10
    depth["value"] = 5000
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY


def test_seed_reading_status_snippet(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = seed_block(PING_DOC, "current_status_str = app.get_current_ping_status().value")
    seed = run_seed(code, "seed_reading", monkeypatch, app=app)
    assert seed["current_status"] is PingStatus.HEALTHY
    assert seed["current_status_str"] == "Healthy"
    assert "Healthy" in capsys.readouterr().out


class FakeAgent:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.status_during: list[str] = []

    def bind(self, app: BedrockAgentCoreApp) -> FakeAgent:
        self.app = app
        return self

    async def invoke_async(self, message: str, session_id: str) -> str:
        self.status_during.append(self.app.get_current_ping_status().value)
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("model unavailable")
        return f"answer to {message}"


def test_seed_decorator_approach_snippet(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = seed_block(PING_DOC, "@app.async_task", "Decorator automatically manages status")
    for fail in (False, True):
        agent = FakeAgent(fail).bind(app)
        seed = run_seed(
            code,
            "seed_decorator",
            monkeypatch,
            app=app,
            agent=agent,
            logger=logging.getLogger("seed"),
        )
        result = asyncio.run(seed["background_task"]("hello", "session-1"))
        if fail:
            assert result == {"error": "model unavailable", "status": "failed"}
        else:
            assert result == "answer to hello"
        assert agent.status_during == ["HealthyBusy"]
        assert app.get_current_ping_status() is PingStatus.HEALTHY


def test_seed_manual_approach_snippet(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    code = seed_block(PING_DOC, "Manual task management for fine-grained control")
    caplog.set_level(logging.INFO)
    for fail in (False, True):
        events: list[dict[str, Any]] = []
        agent = FakeAgent(fail).bind(app)
        seed = run_seed(
            code,
            "seed_manual",
            monkeypatch,
            app=app,
            agent=agent,
            logger=logging.getLogger("seed"),
            record_event=lambda events=events, **event: events.append(event),
        )
        result = asyncio.run(seed["background_task"]("hello", "session-2"))
        if fail:
            assert result == {"error": "model unavailable", "status": "failed"}
            assert events == [
                {"session_id": "session-2", "status": "FAILED", "ping_status": "Healthy"}
            ]
        else:
            assert result == "answer to hello"
            assert events == [
                {"session_id": "session-2", "status": "COMPLETED", "ping_status": "Healthy"}
            ]
        assert agent.status_during == ["HealthyBusy"]
        assert app.get_async_task_info()["active_count"] == 0
    # The safety net in ``finally`` completed an already completed task: a warning, no error.
    assert any("task" in r.getMessage().lower() for r in caplog.records if r.levelname == "WARNING")


def test_seed_always_complete_snippet(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = seed_block(PING_DOC, 'task_id = app.add_async_task("my_task")')
    run_seed(code, "seed_always_complete", monkeypatch, app=app)
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    assert not app._active_tasks


def test_seed_pitfall_recursive_custom_handler(
    app: BedrockAgentCoreApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = seed_block(PING_DOC, "# This calls the ping handler again!")
    run_seed(code, "seed_recursive", monkeypatch, app=app)
    client = app.test_client()
    assert client.get("/ping").json["status"] == "Healthy"
    task_id = app.add_async_task("work")
    assert client.get("/ping").json["status"] == "HealthyBusy"
    app.complete_async_task(task_id)
    assert app.get_current_ping_status() is PingStatus.HEALTHY


def test_seed_pitfall_invalid_status_and_its_fixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = seed_block(PING_DOC, 'return "some_status"')
    app = BedrockAgentCoreApp(configure_logging=False)
    run_seed(wrong, "seed_invalid", monkeypatch, app=app)
    assert app.test_client().get("/ping").json["status"] == "Healthy"

    fixes = [b for b in python_blocks(PING_DOC) if "def good_example():" in b]
    assert len(fixes) == 2
    for index, fix in enumerate(fixes):
        app = BedrockAgentCoreApp(configure_logging=False)
        run_seed(fix, f"seed_fix_{index}", monkeypatch, app=app)
        assert app.get_current_ping_status() is PingStatus.HEALTHY
        assert app.test_client().get("/ping").json["status"] == "Healthy"
