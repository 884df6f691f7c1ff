"""The container image's entry point cannot rot: the Dockerfile's own command, run.

Docker cannot run on these machines, so the test reads the Dockerfile: what it
copies (into a folder laid out as its WORKDIR), its environment and its
command, and runs exactly that command there against the flagship agent. Only
the port is substituted (``PORT``, which the image sets to 8080), so that the
test takes a free one.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import requests
import servers

pytestmark = pytest.mark.e2e

ROOT = servers.ROOT


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def env_of(arguments: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in shlex.split(arguments))
    return {key: value for key, value in pairs}


def test_the_image_is_what_the_managed_runtime_runs() -> None:
    steps = instructions()
    kinds = [kind for kind, _ in steps]
    base = dict(steps)["FROM"]
    assert base.startswith("python:3.") and base.endswith("-slim"), base
    user = [args for kind, args in steps if kind == "USER"]
    assert user and user[-1] not in ("root", "0"), "runs as a user of its own"
    assert [args for kind, args in steps if kind == "EXPOSE"] == ["8080"]
    environment: dict[str, str] = {}
    for kind, args in steps:
        if kind == "ENV":
            environment.update(env_of(args))
    assert environment["PORT"] == "8080"
    assert kinds[-1] == "CMD" and json.loads(steps[-1][1]) == ["gunicorn", "wsgi:app"]
    for kind, args in steps:
        if kind == "RUN":
            assert "amd64" not in args and "arm64" not in args and "x86" not in args


def test_what_the_image_copies_is_not_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = [
        source
        for kind, args in instructions()
        if kind == "COPY"
        for source in shlex.split(args)[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored, f"{source} is copied but .dockerignore leaves it out"
    assert {"tests", "bench", ".git"} <= ignored


def test_the_images_command_serves_the_flagship_agent(tmp_path: Path) -> None:
    workdir = tmp_path / "app"
    workdir.mkdir()
    environment: dict[str, str] = {}
    command: list[str] = []
    for kind, args in instructions():
        if kind == "COPY":
            *sources, _target = shlex.split(args)
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(
                        path, workdir / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy(path, workdir / source)
        elif kind == "ENV":
            environment.update(env_of(args))
        elif kind == "CMD":
            command = json.loads(args)
    port = servers.free_port()
    environment["PORT"] = str(port)  # the one substitution: a free port
    env = servers._env(environment, tmp_path)
    env["PYTHONPATH"] = ""  # what the image has: the package installed, the rest in WORKDIR
    env["PATH"] = f"{Path(servers.sys.executable).parent}:{env.get('PATH', '')}"
    server = servers.Server(command, port, env, tmp_path / "image.log", workdir)
    with servers.serving(server):
        ping = requests.get(server.url + "/ping", timeout=5)
        assert ping.status_code == 200 and ping.json()["status"] == "Healthy"
        reply = requests.post(server.url + "/invocations", json={"action": "info"}, timeout=10)
        assert reply.status_code == 200, reply.text
        assert "available_actions" in reply.json()
        log = server.log()
    assert "Using worker: agentcore_sync.servers.gunicorn_worker.ThreadWorker" in log, log
