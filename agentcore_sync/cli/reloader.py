"""``serve --reload`` on waitress: run the server as a child, restart it when a source changes.

waitress has no reloader of its own. The child is a fresh interpreter each
time, so a change anywhere (the agent, a module it imports) is picked up; it is
stopped with SIGTERM like any deployment, so running tasks are waited for and
recorded. (gunicorn has its own ``--reload``, used as is.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

#: Seconds between two looks at the sources.
POLL_INTERVAL = 1.0
#: Seconds a stopping server may take (its background tasks' grace, and some).
STOP_TIMEOUT = 35.0

_SKIPPED_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "build", "dist"}


def sources(roots: Iterable[Path]) -> Iterator[Path]:
    """The ``.py`` files under ``roots``, skipping hidden, cache and environment directories."""
    seen: set[Path] = set()
    for root in roots:
        root = root.resolve()
        if root in seen:
            continue
        seen.add(root)
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in _SKIPPED_DIRS]
            for name in files:
                if name.endswith(".py"):
                    yield Path(directory, name)


def snapshot(roots: Iterable[Path]) -> dict[Path, float]:
    mtimes: dict[Path, float] = {}
    for path in sources(roots):
        try:
            mtimes[path] = path.stat().st_mtime
        except OSError:
            continue
    return mtimes


def changed(before: dict[Path, float], after: dict[Path, float]) -> list[Path]:
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


def stop(child: subprocess.Popen[bytes]) -> int:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def run_with_reloader(argv: list[str], roots: list[Path]) -> int:
    """Run ``argv`` until SIGTERM or Ctrl-C, restarting it on every change under ``roots``."""
    quit_requested = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        quit_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"Reloading on changes to .py files under {', '.join(map(str, roots))}", err=True)
    mtimes = snapshot(roots)
    while True:
        # A process group of its own: Ctrl-C reaches the reloader only, which stops the
        # server once, with SIGTERM, instead of both racing to shut down.
        child = subprocess.Popen(argv, process_group=0)
        reported_exit = False
        while True:
            if quit_requested.wait(POLL_INTERVAL):
                return stop(child)
            if child.poll() is not None and not reported_exit:
                reported_exit = True
                click.echo(
                    f"The server exited with code {child.returncode}; "
                    "restarting on the next change",
                    err=True,
                )
            now = snapshot(roots)
            paths = changed(mtimes, now)
            if paths:
                mtimes = now
                click.echo(
                    f"Changed: {paths[0]}{' ...' if len(paths) > 1 else ''}; restarting", err=True
                )
                stop(child)
                break
