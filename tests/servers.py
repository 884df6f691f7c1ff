"""Real server processes for tests: gunicorn, waitress and ``app.run()`` on 127.0.0.1.

Each server gets a free port, its own log file and environment, is waited for
until ``/ping`` answers, and is stopped (SIGTERM, then SIGKILL) afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from service_process import free_port

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
STARTUP_TIMEOUT = 20.0


@dataclass
class Reply:
    """An HTTP answer as the tests read it."""

    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def events(self) -> list[Any]:
        return parse_sse(self.body)


def parse_sse(body: bytes) -> list[Any]:
    """The JSON payloads of an SSE body made of ``data: <json>\\n\\n`` events."""
    assert body.endswith(b"\n\n"), body[-200:]
    events = []
    for chunk in body[:-2].split(b"\n\n"):
        assert chunk.startswith(b"data: "), chunk
        events.append(json.loads(chunk[len(b"data: ") :]))
    return events


def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> Any:
    """``predicate()``'s first true value within ``timeout`` seconds; fails the test if none."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


class Server:
    """One server process; ``url`` is its base URL."""

    def __init__(
        self, argv: list[str], port: int, env: dict[str, str], log_path: Path, cwd: Path
    ) -> None:
        self.argv = argv
        self.port = port
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                requests.get(self.url + "/ping", timeout=0.5)
                return self
            except requests.RequestException:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer /ping in {STARTUP_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group (gunicorn's workers too)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.wait(5)


def _env(extra: dict[str, str] | None, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(APPS), str(ROOT / "examples"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    env.setdefault("AGENTCORE_SYNC_RESULT_STORE", f"sqlite:///{tmp / 'results.db'}")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def gunicorn(
    app: str, tmp: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Server:
    """``gunicorn -c gunicorn.conf.py --bind 127.0.0.1:PORT app`` with the shipped config."""
    port = port or free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
        "--bind", f"127.0.0.1:{port}", *args, app,
    ]  # fmt: skip
    return Server(argv, port, _env(env, tmp), tmp / f"gunicorn-{port}.log", ROOT)


def waitress(
    app: str, tmp: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Server:
    """``waitress-serve --listen 127.0.0.1:PORT app``."""
    port = port or free_port()
    argv = [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", *args, app]
    return Server(argv, port, _env(env, tmp), tmp / f"waitress-{port}.log", ROOT)


def run_script(
    script: Path, tmp: Path, env: dict[str, str] | None = None, port: int | None = None
) -> Server:
    """``python script`` whose ``app.run()`` reads its port from ``PORT``."""
    port = port or free_port()
    environment = _env(env, tmp)
    environment["PORT"] = str(port)
    argv = [sys.executable, str(script)]
    return Server(argv, port, environment, tmp / f"run-{port}.log", ROOT)


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
