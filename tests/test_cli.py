"""The ``agentcore-sync`` command line, driven as a user drives it: real processes, real servers.

``serve`` runs as ``python -m agentcore_sync serve ...`` on a free port of
127.0.0.1 and is stopped with SIGTERM; ``invoke`` runs against it and its output
and exit code are checked. Every CLI process gets its own cache directory
(``XDG_CACHE_HOME``), where ``invoke`` keeps the session id and the time of the
last invocation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import servers

pytestmark = pytest.mark.e2e

SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
CLI = [sys.executable, "-m", "agentcore_sync"]
CLI_TIMEOUT = 30.0


# -- helpers (test_monitor.py uses them too) -------------------------------------


def cli_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI process: the test apps importable, a cache of its own."""
    env = servers._env(extra, tmp)
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env["AGENTCORE_SYNC_SHUTDOWN_GRACE"] = "1"
    env.pop("AGENTCORE_SYNC_URL", None)
    env.pop("NO_COLOR", None)
    return env


def run_cli(
    tmp: Path, *args: str, input: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=cli_env(tmp),
        cwd=cwd or servers.ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def cli_server(tmp: Path, target: str, *args: str, cwd: Path | None = None) -> servers.Server:
    """``agentcore-sync serve TARGET --port P ...`` as a server process (not started yet)."""
    port = servers.free_port()
    argv = [*CLI, "serve", target, "--host", "127.0.0.1", "--port", str(port), *args]
    log = tmp / f"serve-{port}.log"
    return servers.Server(argv, port, cli_env(tmp), log, cwd or servers.ROOT)


def stop_cleanly(server: servers.Server) -> None:
    """SIGTERM, and the server exits 0 after shutting the agent down."""
    server.stop()
    assert server.process is not None
    assert server.process.returncode == 0, server.log()


# -- serve, then invoke ----------------------------------------------------------


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    tmp = tmp_path_factory.mktemp("cli")
    server = cli_server(tmp, "cli_app:app").start()
    server.tmp = tmp  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        stop_cleanly(server)
    assert "Serving cli_app:app on http://127.0.0.1:" in server.log()


def invoke(
    server: servers.Server, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(server.tmp, "invoke", server.url, *args, input=input)  # type: ignore[attr-defined]


def test_console_script_and_module_give_the_same_cli(tmp_path: Path) -> None:
    script = shutil.which("agentcore-sync")
    assert script, "`pip install -e .` installs the agentcore-sync console script"
    by_script = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    by_module = run_cli(tmp_path, "--help")
    assert by_script.returncode == by_module.returncode == 0
    for command in ("serve", "invoke", "monitor"):
        assert command in by_script.stdout and command in by_module.stdout


def test_invoke_prints_json_and_sends_the_managed_runtimes_headers(
    agent: servers.Server,
) -> None:
    done = invoke(
        agent,
        '{"action": "echo", "n": 1}',
        "--request-id",
        "request-1",
        "-c",
        "Tenant=acme",
        "--custom",
        "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Trace=t-1",
        "-H",
        "Authorization: Bearer token",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("{\n  "), "pretty-printed JSON"
    answer = json.loads(done.stdout)
    assert answer["payload"] == {"action": "echo", "n": 1}
    assert answer["request_id"] == "request-1"
    assert len(answer["session_id"]) >= 33, "the managed runtime's minimum session id length"
    headers = answer["headers"]  # spelled as the official SDK spells them
    assert headers["x-amzn-bedrock-agentcore-runtime-custom-tenant"] == "acme"
    assert headers["x-amzn-bedrock-agentcore-runtime-custom-trace"] == "t-1"
    assert headers["Authorization"] == "Bearer token"


def test_invoke_keeps_one_session_per_agent_until_told_otherwise(agent: servers.Server) -> None:
    def session_of(*args: str) -> str:
        done = invoke(agent, '{"action": "echo"}', "--compact", *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("\n") == 1, "--compact prints one line"
        return json.loads(done.stdout)["session_id"]

    first = session_of()
    assert session_of() == first, "successive invocations share the session, as in the runtime"
    fresh = session_of("--new-session")
    assert fresh != first
    assert session_of() == fresh
    chosen = "my-own-session-id-that-is-long-enough-000"
    assert session_of("--session-id", chosen) == chosen
    assert session_of() == chosen


def test_invoke_reads_the_payload_from_stdin_or_a_file(agent: servers.Server) -> None:
    done = invoke(agent, "-", "--compact", input='{"action": "echo", "from": "stdin"}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["payload"]["from"] == "stdin"
    payload = agent.tmp / "payload.json"  # type: ignore[attr-defined]
    payload.write_text('{"action": "echo", "from": "file"}')
    done = invoke(agent, f"@{payload}", "--compact")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["payload"]["from"] == "file"


def test_invoke_prints_stream_events_as_they_arrive(agent: servers.Server) -> None:
    interval = 0.5
    process = subprocess.Popen(
        [
            *CLI,
            "invoke",
            agent.url,
            json.dumps({"action": "stream", "count": 4, "interval": interval}),
        ],
        env=cli_env(agent.tmp),  # type: ignore[attr-defined]
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    arrivals: list[tuple[float, dict]] = []
    try:
        for line in process.stdout:
            arrivals.append((time.monotonic(), json.loads(line)))
        assert process.wait(CLI_TIMEOUT) == 0, process.stderr.read() if process.stderr else ""
    finally:
        process.kill()
        process.wait()
    assert [event["i"] for _, event in arrivals] == [0, 1, 2, 3], "one JSON line per event"
    first, last = arrivals[0][0], arrivals[-1][0]
    # Printed live: the first event is out while the agent is still producing the rest.
    assert last - first > 2 * interval, f"events arrived together ({last - first:.2f}s apart)"


def test_invoke_exits_non_zero_when_the_agent_fails(agent: servers.Server) -> None:
    done = invoke(agent, '{"action": "fail"}')
    assert done.returncode == 1
    assert json.loads(done.stdout) == {"error": "failed on purpose"}, "the error body is shown"
    assert "HTTP 500" in done.stderr

    done = invoke(agent, '{"action": "stream_fail"}')
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert json.loads(lines[0]) == {"i": 0}
    assert json.loads(lines[-1])["error"] == "mid-stream"
    assert "stream ended with an error" in done.stderr


def test_invoke_says_when_no_agent_answers(tmp_path: Path) -> None:
    port = servers.free_port()
    done = run_cli(tmp_path, "invoke", str(port), '{"prompt": "hi"}')
    assert done.returncode == 1
    assert f"cannot reach http://127.0.0.1:{port}/invocations" in done.stderr
    assert "connection refused" in done.stderr


@pytest.mark.parametrize("lone", ["8094", ":8094", "localhost:8094", "http://127.0.0.1:8094/agent"])
def test_invoke_with_only_a_url_says_the_payload_is_missing(tmp_path: Path, lone: str) -> None:
    done = run_cli(tmp_path, "invoke", lone)
    assert done.returncode == 2, done.stdout
    assert f"PAYLOAD is missing: {lone!r} reads as the agent's URL" in done.stderr
    assert "cannot reach" not in done.stderr  # nothing was sent


def test_invoke_records_the_invocation_for_monitor(agent: servers.Server) -> None:
    before = time.time()
    assert invoke(agent, '{"action": "echo"}').returncode == 0
    states = list((agent.tmp / "cache" / "agentcore_sync" / "cli").glob("last_invocation-*.json"))  # type: ignore[attr-defined]
    assert [path.name for path in states] == [f"last_invocation-localhost_{agent.port}.json"]
    state = json.loads(states[0].read_text())
    assert state["url"] == agent.url
    assert before <= state["last_invocation"] <= time.time()


# -- serving variants ------------------------------------------------------------


def test_serve_on_gunicorn_with_workers_and_metrics(tmp_path: Path) -> None:
    server = cli_server(
        tmp_path, "background_app:app", "--server", "gunicorn", "--workers", "2",
        "--threads", "4", "--metrics-path", "/metrics",
    )  # fmt: skip
    with servers.serving(server):
        done = run_cli(tmp_path, "invoke", server.url, '{"action": "start", "seconds": 3}')
        assert done.returncode == 0, done.stderr
        assert requests.get(server.url + "/ping", timeout=5).json()["status"] == "HealthyBusy"
        # Whichever worker answers, the task is counted (the workers share their counts).
        deadline = time.monotonic() + 5
        while True:
            metrics = requests.get(server.url + "/metrics", timeout=5).text
            if 'agentcore_active_tasks{state="running"} 1.0' in metrics:
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.1)
        assert 'agentcore_ping_status{status="HealthyBusy"} 1.0' in metrics
    assert server.process is not None and server.process.returncode == 0, server.log()
    log = server.log()
    assert "(gunicorn, 2 worker(s) x 4 threads)" in log
    assert "Using worker: agentcore_sync.servers.gunicorn_worker.ThreadWorker" in log


def test_serve_a_flask_app_with_a_mounted_agent_and_a_file_path(tmp_path: Path) -> None:
    server = cli_server(tmp_path, "cli_app:flask_app", "--metrics-path", "/metrics")
    with servers.serving(server):
        done = run_cli(tmp_path, "invoke", server.url + "/agent", '{"x": 1}', "--compact")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"mounted": True, "payload": {"x": 1}}
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert 'agentcore_invocations_total{code="200",outcome="success"} 1.0' in metrics
    stop_cleanly(server)

    script = servers.ROOT / "examples" / "simple_agent.py"
    server = cli_server(tmp_path, str(script), cwd=tmp_path)
    with servers.serving(server):
        done = run_cli(tmp_path, "invoke", server.url, '{"action": "info"}', "--compact")
        assert done.returncode == 0, done.stderr
        assert "available_actions" in done.stdout
    stop_cleanly(server)


def test_serve_reload_restarts_on_a_change(tmp_path: Path) -> None:
    source = tmp_path / "reloading_agent.py"
    source.write_text(
        "from agentcore_sync import BedrockAgentCoreApp\n"
        "app = BedrockAgentCoreApp()\n"
        "@app.entrypoint\n"
        "def main(payload):\n"
        "    return {'version': 1}\n"
    )
    server = cli_server(tmp_path, "reloading_agent:app", "--reload", cwd=tmp_path)
    with servers.serving(server):
        assert requests.post(server.url + "/invocations", json={}, timeout=5).json() == {
            "version": 1
        }
        source.write_text(source.read_text().replace("'version': 1", "'version': 2"))
        stat = source.stat()
        os.utime(source, (stat.st_atime, stat.st_mtime + 2))  # a change even on coarse clocks
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.post(server.url + "/invocations", json={}, timeout=5).json()
            except requests.RequestException:
                answer = None  # restarting
            if answer == {"version": 2}:
                break
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
    assert server.process is not None and server.process.returncode == 0, server.log()
    assert "restarting" in server.log()
    with pytest.raises(requests.ConnectionError):  # the reloader stopped its server too
        requests.get(server.url + "/ping", timeout=2)


# -- bad arguments: a clear error and exit code 2 --------------------------------

BAD_ARGUMENTS = [
    (["invoke", '{"prompt": '], "PAYLOAD is not valid JSON"),
    (["invoke", "8080", "{}", "extra"], "takes a PAYLOAD, optionally after the agent's URL"),
    (["invoke", "ftp://host/x", "{}"], "is not an http(s) URL"),
    (["invoke", "localhost:99999", "{}"], "Invalid value for URL"),
    (["invoke", "{}", "-c", "no equals sign"], "is not NAME=VALUE"),
    (["invoke", "{}", "-H", "NoColon"], "is not 'NAME: VALUE'"),
    (["invoke", "@/no/such/file.json"], "cannot read /no/such/file.json"),
    (["serve", "no_such_module:app"], "no module named 'no_such_module'"),
    (["serve", "cli_app:no_such_app"], "module 'cli_app' has no attribute 'no_such_app'"),
    (["serve", "not a target"], "is not MODULE:APP"),
    (["serve", "cli_app:app", "--workers", "2"], "--workers 2 needs --server gunicorn"),
    (["serve", "cli_app:app", "--server", "nginx"], "'nginx' is not one of 'waitress', 'gunicorn'"),
    (["serve", "cli_app:app", "--metrics-path", "/ping"], "must start with '/' and not be /ping"),
    (["serve", "cli_app:app", "--port", "70000"], "70000 is not in the range"),
    (["monitor", "--idle-timeout", "59"], "it must be between 60 and 28800 seconds"),
    (["monitor", "--max-lifetime", "9h"], "9h is 32400 seconds; it must be between 60 and 28800"),
    (["monitor", "--idle-timeout", "1h", "--max-lifetime", "30m"], "must not exceed the maximum"),
    (["monitor", "--idle-timeout", "soon"], "'soon' is not a duration"),
    (["monitor", "--stuck-after", "0"], "it must be more than 0 seconds"),
    (["monitor", "--interval", "0"], "it must be at least 0.1 seconds"),
    (["monitor", "--metrics-path", "metrics"], "must start with '/'"),
    (["launch"], "No such command 'launch'"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_ARGUMENTS, ids=[" ".join(args) for args, _ in BAD_ARGUMENTS]
)
def test_bad_arguments_give_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_cli(tmp_path, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
