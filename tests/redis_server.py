"""Pytest fixtures that run a real ``redis-server`` on a free 127.0.0.1 port.

Use them by importing the fixtures into a test module (or listing this module in
``pytest_plugins``):

- ``redis_server``: a started :class:`RedisServer` (``.url``, ``.stop()``, ``.start()``
  on the same port, for outage tests), killed after the test.
- ``redis_url``: just its URL.
- ``redis_server_factory``: ``make(password=None)`` for more servers, e.g. one with
  ``--requirepass``.

Without ``redis-server`` on PATH these tests are skipped with a loud reason on a
developer machine, and fail when the environment variable CI is "true".
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from service_process import ServiceProcess, skip_or_fail


def redis_server_binary() -> str:
    """Path of redis-server; skip the test (fail it in CI) when there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail(
            "REDIS TESTS NOT RUN: redis-server is not on PATH. Install it (apt-get install "
            "redis-server, brew install redis) to test the redis:// result store."
        )
    return binary


class RedisServer(ServiceProcess):
    """One redis-server process in a temp dir, without persistence; restartable."""

    name = "redis-server"

    def __init__(self, binary: str, directory: Path, password: str | None = None) -> None:
        super().__init__()
        self.binary = binary
        self.directory = directory
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # -NOAUTH: up, but wants the password first.
        return reply.startswith((b"+PONG", b"-NOAUTH"))


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """``make(password=None)`` starts another server; all are killed after the test."""
    binary = redis_server_binary()
    servers: list[RedisServer] = []

    def make(password: str | None = None) -> RedisServer:
        server = RedisServer(binary, tmp_path_factory.mktemp("redis"), password)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A running redis-server without a password."""
    return redis_server_factory()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:<port>/0`` of a running redis-server."""
    return redis_server.url
