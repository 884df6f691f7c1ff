"""What the results were measured on: the machine, the versions, the date."""

import dataclasses
import datetime
import os
import platform
import shutil
import subprocess
from importlib import metadata

from . import servers
from .config import ROOT, Settings

PACKAGES = [
    "agentcore_sync",
    "bedrock-agentcore",
    "starlette",
    "uvicorn",
    "anyio",
    "flask",
    "werkzeug",
    "waitress",
    "gunicorn",
]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.virtual_memory().total / 2**30, 1)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    if not shutil.which("wrk"):
        return "not installed"
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0] if lines else "unknown"


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def describe(settings: Settings, started: datetime.datetime, seconds: float) -> dict:
    return {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if settings.quick else "full",
        "duration_s": round(seconds, 1),
        "commit": _commit(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in PACKAGES},
        "wrk": _wrk_version(),
        "gunicorn_config": servers.gunicorn_settings(),
        "waitress_threads": settings.waitress_threads,
        "sdk_thread_pool": servers.sdk_thread_pool(),
        "settings": dataclasses.asdict(settings),
    }
