"""One session's agent process: what a microVM is to the managed runtime.

Each process gets a fresh, empty home and temporary directory, and loses them
when it ends; its log is kept outside them, as the managed runtime keeps a
session's logs after its microVM is gone. The agent is served with
``agentcore-sync serve`` on the server the user chose, on a port of
127.0.0.1 of its own.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Environment variables that would point the agent at directories outside its microVM.
_OUTSIDE_DIRS = ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "PWD")


class Server(enum.Enum):
    """How a session's agent is served."""

    WAITRESS = "waitress"
    GUNICORN = "gunicorn"


class StartFailed(Exception):
    """The agent process exited, or did not answer ``/ping``, before it was healthy."""

    def __init__(self, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MicroVM:
    """An agent process with its own home and temporary directory.

    Owned by the emulator's session table: ``launch`` and ``end`` are each
    called once, by one thread.
    """

    def __init__(self, target: str, server: Server, workdir: str, log_path: Path) -> None:
        self.target = target
        self.server = server
        self.workdir = workdir
        self.log_path = log_path
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0

    @property
    def home(self) -> Path:
        assert self.root is not None
        return self.root / "home"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self, extra_env: dict[str, str] | None = None) -> None:
        """Start the process; ``exited()`` and a ``/ping`` say when it is up."""
        self.root = Path(tempfile.mkdtemp(prefix="agentcore-session-"))
        (self.root / "home").mkdir()
        (self.root / "tmp").mkdir()
        self.port = free_port()
        env = {key: value for key, value in os.environ.items() if key not in _OUTSIDE_DIRS}
        tmp = str(self.root / "tmp")
        env.update(
            HOME=str(self.home),
            TMPDIR=tmp,
            TMP=tmp,
            TEMP=tmp,
            PORT=str(self.port),
            # As in a container: the runtime says where results end (see serving.in_container).
            DOCKER_CONTAINER="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env or {})
        command = [
            sys.executable,
            "-m",
            "agentcore_sync",
            "serve",
            self.target,
            "--server",
            self.server.value,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.launched_at = time.monotonic()
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: gunicorn's workers end with it.
                start_new_session=True,
            )

    def exited(self) -> int | None:
        """The exit code once the process has ended, else ``None``."""
        return self.process.poll() if self.process is not None else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def failed(self, reason: str) -> StartFailed:
        return StartFailed(reason, self.log_path, self.log_tail())

    def end(self, grace: float) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; then remove its
        directories. Returns the exit code (negative: the signal that ended it)."""
        code = None
        process = self.process
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait()
            # Whatever of its group outlived it (a gunicorn worker whose arbiter was killed).
            _signal_group(process.pid, signal.SIGKILL)
            code = process.returncode
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        return code


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
