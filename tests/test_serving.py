"""One way to serve, from any folder: the settings module, unprepared servers, HOST,
the agent's own default store, and Flask's debug mode kept apart from the runtime's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
import requests
import servers

from agentcore_sync import AgentCore, BedrockAgentCoreApp, PingStatus
from agentcore_sync.core import invocation
from agentcore_sync.core.runtime import default_store_url
from agentcore_sync.core.versions import gate, release
from agentcore_sync.servers.serving import default_host

#: An agent in a folder of its own: nothing of this repository's files beside it.
USER_AGENT = textwrap.dedent(
    """
    import os, time
    from agentcore_sync import BedrockAgentCoreApp

    flask_app = BedrockAgentCoreApp()

    @flask_app.async_task
    def work(seconds):
        time.sleep(seconds)
        return seconds

    @flask_app.entrypoint
    def main(payload):
        if payload.get("action") == "start":
            return {"task_id": work.start(payload["seconds"]).task_id, "pid": os.getpid()}
        return {"info": flask_app.get_async_task_info(), "pid": os.getpid()}
    """
)


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "myapp.py").write_text(USER_AGENT)
    return folder


def user_server(folder: Path, tmp_path: Path, argv: list[str]) -> servers.Server:
    """``argv`` run from ``folder``, with only the package installed (no repository paths)."""
    port = servers.free_port()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    argv = [arg.replace("PORT", str(port)) for arg in argv]
    return servers.Server(argv, port, env, tmp_path / f"server-{port}.log", folder)


def invoke(server: servers.Server, payload: dict) -> dict:
    reply = requests.post(server.url + "/invocations", json=payload, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.e2e
def test_the_settings_module_serves_truthfully_from_any_folder(
    user_folder: Path, tmp_path: Path
) -> None:
    """``gunicorn -c python:agentcore_sync.servers.gunicorn_config -w 2`` from the user's
    own folder: every worker's /ping and task info count a task running on the other."""
    argv = [
        sys.executable, "-m", "gunicorn", "-c", "python:agentcore_sync.servers.gunicorn_config",
        "--bind", "127.0.0.1:PORT", "-w", "2", "myapp:flask_app",
    ]  # fmt: skip
    with servers.serving(user_server(user_folder, tmp_path, argv)) as server:
        started = invoke(server, {"action": "start", "seconds": 4})
        deadline = time.monotonic() + 3
        pids_seen = set()
        while time.monotonic() < deadline and len(pids_seen) < 2:
            # Fresh connections, so that both workers are asked.
            with requests.Session() as session:
                answer = session.post(server.url + "/invocations", json={}, timeout=10).json()
                pids_seen.add(answer["pid"])
                assert answer["info"]["active_count"] == 1, answer
                assert session.get(server.url + "/ping", timeout=5).json()["status"] == (
                    "HealthyBusy"
                )
        assert len(pids_seen) == 2, f"only worker(s) {pids_seen} answered besides {started}"
        log = server.log()
    assert "at most 14 concurrent invocations" in log


@pytest.mark.e2e
def test_plain_gunicorn_says_what_is_off_and_the_command_that_fixes_it(
    user_folder: Path, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:PORT", "myapp:flask_app"]
    with servers.serving(user_server(user_folder, tmp_path, argv)) as server:
        invoke(server, {})
        log = server.log()
    lines = [line for line in log.splitlines() if "without agentcore_sync's settings" in line]
    assert len(lines) == 1, log
    assert "gunicorn -c python:agentcore_sync.servers.gunicorn_config MODULE:APP" in lines[0]


@pytest.mark.e2e
def test_waitress_serve_says_what_is_off_and_the_command_that_fixes_it(
    user_folder: Path, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "waitress", "--listen=127.0.0.1:PORT", "myapp:flask_app"]
    with servers.serving(user_server(user_folder, tmp_path, argv)) as server:
        invoke(server, {})
        invoke(server, {})
        log = server.log()
    lines = [line for line in log.splitlines() if "waitress-serve" in line]
    assert len(lines) == 1, log
    assert "agentcore-sync serve MODULE:APP" in lines[0]
    assert json.loads(lines[0])["level"] == "WARNING"


@pytest.mark.unit
def test_host_setting_beside_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "127.0.0.2")
    assert default_host() == "127.0.0.2"
    monkeypatch.delenv("HOST")
    monkeypatch.delenv("DOCKER_CONTAINER", raising=False)
    if not os.path.exists("/.dockerenv"):
        assert default_host() == "127.0.0.1"
    monkeypatch.setenv("DOCKER_CONTAINER", "1")
    assert default_host() == "0.0.0.0"


@pytest.fixture
def default_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No store set: each agent's default store, in a cache folder of this test's own."""
    monkeypatch.delenv("AGENTCORE_SYNC_RESULT_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.unit
def test_each_agent_has_a_default_store_of_its_own(
    default_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = default_store
    one = default_store_url("/srv/agents/one/agent")
    assert one == default_store_url("/srv/agents/one/agent")  # the same after a restart
    assert one != default_store_url("/srv/agents/two/agent")
    assert one.startswith(f"sqlite:///{tmp_path}/agentcore_sync/agent-")
    # Defined in this module: named after it.
    app = BedrockAgentCoreApp()
    assert app.runtime.result_store_url == default_store_url(str(Path(__file__).with_suffix("")))
    monkeypatch.setenv("AGENTCORE_SYNC_RESULT_STORE", "memory://")
    assert AgentCore().result_store_url == "memory://"


@pytest.mark.unit
def test_two_agents_on_one_machine_do_not_read_each_others_records(default_store: Path) -> None:
    tmp_path = default_store
    first = AgentCore(agent=str(tmp_path / "first"))
    second = AgentCore(agent=str(tmp_path / "second"))
    handle = first.submit(lambda: "mine")
    assert handle.result(timeout=10) == "mine"
    first.result_store().flush()
    assert first.get_task_result(handle.task_id)["result"] == "mine"
    assert second.get_task_result(handle.task_id) is None
    first.shutdown()
    second.shutdown()


@pytest.mark.unit
@pytest.mark.parametrize(
    "debug_setting",
    ["config", "attribute", "env"],
)
def test_flask_debug_mode_never_opens_the_debug_actions(
    debug_setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if debug_setting == "env":
        monkeypatch.setenv("FLASK_DEBUG", "1")
    app = BedrockAgentCoreApp(result_store="memory://")
    if debug_setting == "config":
        app.config["DEBUG"] = True
    elif debug_setting == "attribute":
        app.debug = True
    seen = []

    @app.entrypoint
    def handler(payload):
        seen.append(payload)
        return {"handled": True}

    reply = app.test_client().post("/invocations", json={"_agent_core_app_action": "force_busy"})
    assert reply.get_json() == {"handled": True}
    assert seen == [{"_agent_core_app_action": "force_busy"}]
    assert app.get_current_ping_status() is PingStatus.HEALTHY


@pytest.mark.unit
def test_the_runtimes_debug_flag_opens_them() -> None:
    app = BedrockAgentCoreApp(debug=True, result_store="memory://")
    reply = app.test_client().post("/invocations", json={"_agent_core_app_action": "force_busy"})
    assert reply.get_json() == {"forced_status": "HealthyBusy"}
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    assert app.debug is False  # Flask's own flag is Flask's


class _ChunkedInput:
    """A body of ``size`` bytes that arrives in chunks, with no declared length."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, wanted: int) -> bytes:
        size = min(wanted, self.left)
        self.left -= size
        return b" " * size


@pytest.mark.unit
def test_a_refused_body_without_a_length_is_not_held_in_memory() -> None:
    limit = 16 * 1024 * 1024
    source = _ChunkedInput(3 * limit)
    environ = {"wsgi.input": source, "wsgi.input_terminated": True}
    request = invocation.InvocationRequest(environ, None)
    tracemalloc.start()
    try:
        with pytest.raises(invocation.BadRequestBody) as refused:
            invocation.read_json_body(request, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.outcome.status == 413
    assert peak < 4 * invocation.SPOOL_SIZE
    assert source.left == 2 * limit - 1  # read one byte past the limit, no further


@pytest.mark.unit
def test_an_accepted_body_without_a_length_arrives_whole() -> None:
    body = json.dumps({"text": "x" * (3 * invocation.SPOOL_SIZE)}).encode()
    source = _ChunkedInput(0)
    chunks = [body[i : i + 7000] for i in range(0, len(body), 7000)]
    source.read = lambda wanted: chunks.pop(0) if chunks else b""  # type: ignore[method-assign]
    environ = {"wsgi.input": source, "wsgi.input_terminated": True}
    payload = invocation.read_json_body(invocation.InvocationRequest(environ, None), 1 << 30)
    assert len(payload["text"]) == 3 * invocation.SPOOL_SIZE
    assert environ["wsgi.input"].read() == body  # still readable by the handler


@pytest.mark.unit
def test_version_gates_take_final_releases_of_the_tested_series_only() -> None:
    assert release("3.1.3") == (3, 1, 3)
    assert release("3.2") == (3, 2, 0)
    assert release("3.2.0.dev0") is None
    assert release("27.0.0rc1") is None
    flask = gate("fast path (test)", "flask", (3, 1, 3))
    installed = release(flask.version or "")
    tested = installed is not None and installed[:2] == (3, 1) and installed >= (3, 1, 3)
    assert flask.on == tested
    missing = gate("accelerator (test)", "no-such-library-here", (1, 0, 0))
    assert not missing.on
    assert "off, the plain path serves" in missing.describe()


@pytest.mark.e2e
def test_app_run_and_serve_share_one_set_of_settings(tmp_path: Path) -> None:
    """``agentcore-sync serve`` applies the body limit, the bound and JSON logs as run() does."""
    app_file = tmp_path / "agent.py"
    app_file.write_text(
        "from agentcore_sync import BedrockAgentCoreApp\n"
        "app = BedrockAgentCoreApp(max_body_size=1000)\n"
        "@app.entrypoint\ndef main(payload):\n    return payload\n"
    )
    port = servers.free_port()
    argv = [
        sys.executable, "-m", "agentcore_sync", "serve", str(app_file), "--port", str(port),
        "--threads", "6",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with servers.serving(servers.Server(argv, port, env, tmp_path / "serve.log", tmp_path)) as s:
        too_large = requests.post(s.url + "/invocations", data=b"[" + b"1," * 800 + b"1]")
        assert too_large.status_code == 413
        assert too_large.json() == {"error": "Request body too large", "limit": 1000}
        log = s.log()
    assert "at most 4 concurrent invocations" in log
    assert any(line.startswith("{") and '"level": "INFO"' in line for line in log.splitlines())


@pytest.mark.e2e
def test_gunicorn_settings_module_is_the_shipped_config() -> None:
    from agentcore_sync.servers import gunicorn_config

    shipped = subprocess.run(
        [sys.executable, "-c", "import json, runpy; print(json.dumps(sorted(k for k in "
         "runpy.run_path('gunicorn.conf.py') if not k.startswith('_'))))"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, check=True,
    ).stdout  # fmt: skip
    assert sorted(gunicorn_config.SETTINGS) == json.loads(shipped)


PREFIX_WARNING = (
    "The agent answers at /agent/invocations, /agent/ping, not at /ping and /invocations"
)


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["python", "gunicorn"])
def test_a_mounted_example_serves_its_routes_and_says_where_the_agent_answers(
    tmp_path: Path, how: str
) -> None:
    """``python examples/mounted.py`` serves what its docstring curls; either way
    of serving the app says that the agent is not at the managed runtime's paths."""
    if how == "python":
        server = servers.run_script(servers.ROOT / "examples" / "mounted.py", tmp_path)
    else:
        server = servers.gunicorn("mounted:flask_app", tmp_path)
    with servers.serving(server):
        assert requests.get(server.url + "/", timeout=5).json()["agent"] == "/agent/invocations"
        assert requests.get(server.url + "/agent/ping", timeout=5).json()["status"] == "Healthy"
        reply = requests.post(server.url + "/agent/invocations", json={"name": "Ada"}, timeout=5)
        assert reply.json()["greeting"] == "Hello, Ada"
        assert requests.get(server.url + "/ping", timeout=5).status_code == 404
        log = server.log()
    lines = [line for line in log.splitlines() if PREFIX_WARNING in line]
    assert len(lines) == 1, log
    assert json.loads(lines[0])["level"] == "WARNING"


@pytest.mark.unit
def test_run_refuses_an_app_the_agent_is_not_mounted_into() -> None:
    import flask

    agent = AgentCore(configure_logging=False)
    with pytest.raises(ValueError, match=r"not mounted into 'other'.*register_blueprint"):
        agent.run(app=flask.Flask("other"))


@pytest.mark.unit
def test_in_a_container_a_local_store_is_said_to_end_with_the_microvm(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from agentcore_sync.servers.serving import warn_of_local_results

    monkeypatch.setenv("DOCKER_CONTAINER", "1")
    local = AgentCore(configure_logging=False, result_store=f"sqlite:///{tmp_path / 'r.db'}")
    memory = AgentCore(configure_logging=False, result_store="memory://")
    shared = AgentCore(configure_logging=False, result_store="redis://127.0.0.1:6379/0")
    with caplog.at_level("WARNING", logger="agentcore_sync.serving"):
        warn_of_local_results([local, memory, shared, local])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # once per local store
    assert all("end with the session's microVM" in line for line in lines)
    assert all("redis://" in line for line in lines)
    assert not any("redis://127.0.0.1:6379/0" in line for line in lines)


@pytest.mark.e2e
def test_a_server_in_a_container_says_where_results_end(tmp_path: Path) -> None:
    server = servers.waitress("background_app:app", tmp_path, env={"DOCKER_CONTAINER": "1"})
    with servers.serving(server):
        log = server.log()
    lines = [line for line in log.splitlines() if "end with the session's microVM" in line]
    assert len(lines) == 1, log
    assert json.loads(lines[0])["level"] == "WARNING"
