"""Start a peer's server on a free loopback port, and stop it for sure."""

import atexit
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psutil

from .config import APPS_DIR, GUNICORN_CONF
from .peers import Peer, child_env, session_env

HOST = "127.0.0.1"
_running: list["Server"] = []


class ServerError(RuntimeError):
    """The server did not come up."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@cache
def gunicorn_settings() -> dict:
    """workers, threads and worker_class of the shipped gunicorn.conf.py, read by Python."""
    if not GUNICORN_CONF.exists():
        return {"path": None, "workers": 1, "threads": 8, "worker_class": "gthread"}
    code = (
        "import json, runpy, sys\n"
        "ns = runpy.run_path(sys.argv[1])\n"
        "keys = ('workers', 'threads', 'worker_class')\n"
        "print(json.dumps({k: ns.get(k) for k in keys}, default=str))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(GUNICORN_CONF)],
        env=child_env(PORT="8080"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    settings = {"path": str(GUNICORN_CONF), "workers": 1, "threads": 1, "worker_class": "sync"}
    if done.returncode == 0:
        read = json.loads(done.stdout.strip().splitlines()[-1])
        settings.update({k: v for k, v in read.items() if v is not None})
    else:
        lines = done.stderr.strip().splitlines()
        settings["error"] = lines[-1] if lines else f"exit code {done.returncode}"
    return settings


def thread_count(peer: Peer, waitress_threads: int, sdk_pool: int) -> int:
    """How many requests the peer's server runs at once."""
    if peer.server == "gunicorn":
        conf = gunicorn_settings()
        return int(peer.workers or conf["workers"]) * int(conf["threads"])
    if peer.server == "uvicorn":
        return sdk_pool
    return waitress_threads


def server_command(peer: Peer, port: int, waitress_threads: int) -> list[str]:
    if peer.server == "gunicorn":
        conf = gunicorn_settings()
        if conf["path"]:
            command = [sys.executable, "-m", "gunicorn", "-c", conf["path"]]
        else:  # the shipped config is not there yet: its documented choice by hand
            command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "8"]
        if peer.workers:
            command += ["-w", str(peer.workers)]
        return [*command, "--bind", f"{HOST}:{port}", f"{peer.app_module}:app"]
    script = APPS_DIR / f"{peer.app_module}.py"
    return [sys.executable, str(script), "--port", str(port), "--threads", str(waitress_threads)]


@dataclass
class Server:
    peer: Peer
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def host(self) -> str:
        return HOST

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu_seconds(self) -> float:
        """User and system CPU used so far by all the server's processes."""
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def log_tail(self) -> str:
        """The last line of the server's output (an exception's last line says the most)."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers."""
        if self in _running:
            _running.remove(self)
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=3)
        # Whatever of its group is still there (a lingering worker, or all of it).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _workers_up(server: Server) -> bool:
    """Under gunicorn, /ping answering means one worker is up: wait for all of them."""
    if server.peer.server != "gunicorn":
        return True
    workers = server.peer.workers or int(gunicorn_settings()["workers"])
    return len(server.processes()) > workers


def launch(peer: Peer, session_dir: Path, *, waitress_threads: int) -> Server:
    """Launch the peer's server in its own session directory, without waiting for it."""
    session_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = session_env(session_dir, PORT=str(port), BENCH_HANDLER=peer.handler)
    log_path = session_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(peer, port, waitress_threads),
            cwd=session_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(peer, port, process, log_path)
    _running.append(server)
    return server


def start(peer: Peer, session_dir: Path, *, waitress_threads: int, timeout: float = 30) -> Server:
    """Start the peer's server in its own session directory; return once /ping answers."""
    server = launch(peer, session_dir, waitress_threads=waitress_threads)
    process, port = server.process, server.port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _running.remove(server)
            raise ServerError(f"exited with code {process.returncode}: {server.log_tail()}")
        if _ready(port) and _workers_up(server):
            return server
        time.sleep(0.05)
    server.stop()
    raise ServerError(f"no answer on /ping within {timeout:.0f} s: {server.log_tail()}")


def launch_until_healthy(
    peer: Peer, session_dir: Path, *, waitress_threads: int, timeout: float = 30
) -> tuple[float, Server]:
    """Launch the peer's server; seconds from the launch to its first Healthy /ping
    (polled every 5 ms), and the server."""
    began = time.perf_counter()
    server = launch(peer, session_dir, waitress_threads=waitress_threads)
    while time.perf_counter() - began < timeout:
        if server.process.poll() is not None:
            _running.remove(server)
            raise ServerError(f"exited with code {server.process.returncode}: {server.log_tail()}")
        if _healthy(server.port):
            return time.perf_counter() - began, server
        time.sleep(0.005)
    server.stop()
    raise ServerError(f"no Healthy /ping within {timeout:.0f} s: {server.log_tail()}")


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        body = response.read()
        return response.status == 200 and json.loads(body).get("status") == "Healthy"
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()


@cache
def sdk_thread_pool() -> int:
    """The official SDK runs plain handlers and /ping in anyio's default thread pool."""
    try:
        import anyio
        import anyio.to_thread
    except ImportError:
        return 40  # anyio's documented default

    async def size():
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    return anyio.run(size)


@contextlib.contextmanager
def running(peer: Peer, session_dir: Path, *, waitress_threads: int):
    server = start(peer, session_dir, waitress_threads=waitress_threads)
    try:
        yield server
    finally:
        server.stop()


@atexit.register
def stop_all() -> None:
    for server in list(_running):
        server.stop()
