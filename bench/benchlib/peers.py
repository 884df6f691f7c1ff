"""The peers: which runtime, on which server, and whether it can run here."""

import os
import subprocess
import sys
from dataclasses import dataclass

from .config import APPS_DIR, BENCH_DIR

RUNTIME_APPS = {"ours": "ours_app", "sdk": "sdk_app", "bare": "bare_app"}
RUNTIME_PACKAGES = {"ours": "agentcore_sync", "sdk": "bedrock_agentcore.runtime", "bare": None}
RUNTIME_NAMES = {"ours": "agentcore_sync", "sdk": "official SDK", "bare": "bare WSGI"}


@dataclass(frozen=True)
class Peer:
    """One thing measured: a runtime on a server, or a runtime in-process."""

    runtime: str  # ours | sdk | bare
    server: str  # waitress | gunicorn | uvicorn | in-process
    workers: int | None = None  # gunicorn -w, None: the shipped config's choice
    handler: str = "sync"  # the official SDK's entrypoint kind (see apps/sdk_app.py)

    @property
    def key(self) -> str:
        workers = f"-w{self.workers}" if self.workers else ""
        return f"{self.runtime}-{self.server}{workers}"

    @property
    def label(self) -> str:
        if self.server == "in-process":
            return RUNTIME_NAMES[self.runtime]
        workers = f" -w {self.workers}" if self.workers else ""
        return f"{RUNTIME_NAMES[self.runtime]} on {self.server}{workers}"

    @property
    def app_module(self) -> str:
        return RUNTIME_APPS[self.runtime]

    def modules(self) -> tuple[str, ...]:
        """What must import for this peer to run."""
        if self.server == "in-process":
            return (RUNTIME_PACKAGES[self.runtime],)
        return (self.app_module, self.server)


OURS_WAITRESS = Peer("ours", "waitress")
OURS_GUNICORN = Peer("ours", "gunicorn")
BARE_WAITRESS = Peer("bare", "waitress")
BARE_GUNICORN = Peer("bare", "gunicorn")
SDK_UVICORN = Peer("sdk", "uvicorn")
SDK_UVICORN_ASYNC = Peer("sdk", "uvicorn", handler="async")
OURS_INPROC = Peer("ours", "in-process")
SDK_INPROC = Peer("sdk", "in-process")


def child_env(**extra: str) -> dict[str, str]:
    """Environment for every child process: the apps and the harness importable."""
    env = dict(os.environ)
    paths = [str(APPS_DIR), str(BENCH_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def session_env(session_dir, **extra: str) -> dict[str, str]:
    """child_env for a process that runs a runtime in `session_dir`.

    Its task records go to an SQLite store of its own there (the default kind of
    store), so no run or peer sees another's records.
    """
    store = f"sqlite:///{session_dir / 'results.db'}"
    return child_env(AGENTCORE_SYNC_RESULT_STORE=store, **extra)


_preflight_cache: dict[tuple[str, ...], str | None] = {}


def preflight(peer: Peer) -> str | None:
    """None when the peer's modules import in a fresh interpreter, else the error."""
    modules = peer.modules()
    if modules not in _preflight_cache:
        code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
        done = subprocess.run(
            [sys.executable, "-c", code, *modules],
            cwd=APPS_DIR,  # as the servers, which do not run in the caller's directory
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        error = None
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            error = lines[-1] if lines else f"import failed with exit code {done.returncode}"
        _preflight_cache[modules] = error
    return _preflight_cache[modules]
