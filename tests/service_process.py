"""A service the tests run as a process of its own on a free port of 127.0.0.1.

``redis_server`` and ``moto_server`` start theirs through ``ServiceProcess``:
started and waited for, killed for an outage, started again on the same port.
A service that is not installed skips its tests with a loud reason on a
developer machine and fails them when the environment variable CI is "true".
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def skip_or_fail(reason: str) -> None:
    """Skip the test for a missing service; in CI, fail it."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " CI=true, so this is a failure, not a skip.")
    pytest.skip(reason)


class ServiceProcess:
    """A server process on ``self.port``; subclasses say how to run it and when it answers."""

    #: Its name in errors.
    name = "the service"
    #: Seconds it has to answer after its start.
    start_timeout = 10.0

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        raise NotImplementedError

    def log_tail(self) -> str:
        """What it said before failing to start, if it keeps a log."""
        return ""

    def start(self) -> None:
        """Start on ``self.port`` and wait until it answers."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.start_timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not start on port {self.port}:\n{self.log_tail()}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill it (an outage, as far as clients can tell; what it held in memory is lost)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None
