"""Bring the benchmark's tools in place: its own virtual environment and wrk.

Standard library only: this runs on whatever interpreter started run.py.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .config import ROOT, VENV_DIR

# What the venv holds besides the project itself (installed editable with its
# bench extra): the official SDK and its server, and the servers we run on.
PACKAGES = [
    "bedrock-agentcore",
    "uvicorn",
    "gunicorn",
    "waitress",
    "matplotlib",
    "psutil",
    "requests",
]
STAMP = VENV_DIR / ".bench-installed"


def venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV_DIR.resolve()


def _wanted_stamp() -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(PACKAGES).encode())
    for name in ("setup.cfg", "pyproject.toml"):
        path = ROOT / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv() -> Path:
    """Create bench/.venv and install into it, unless an identical install is there."""
    python = venv_python()
    if not python.exists():
        print(f"bench: creating {VENV_DIR}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
    wanted = _wanted_stamp()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return python
    print("bench: installing the benchmark's packages into the venv", flush=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[bench]", *PACKAGES], check=True)
    STAMP.write_text(wanted)
    return python


def reexec_in_venv(python: Path, argv: list[str]) -> None:
    """Replace this process with the same command run by the venv's interpreter."""
    os.execv(str(python), [str(python), *argv])


def ensure_wrk() -> str | None:
    """Return None when wrk is on PATH (installing it with apt-get if needed), else why not."""
    if shutil.which("wrk"):
        return None
    if shutil.which("apt-get") is None:
        return "wrk is not installed and apt-get is not available"
    if os.geteuid() != 0:
        return "wrk is not installed and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    print("bench: installing wrk with apt-get", flush=True)
    if subprocess.run(install, env=env, stdin=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdin=subprocess.DEVNULL)
        subprocess.run(install, env=env, stdin=subprocess.DEVNULL)
    if shutil.which("wrk"):
        return None
    return "wrk could not be installed with apt-get"
