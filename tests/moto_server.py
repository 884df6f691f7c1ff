"""Pytest fixtures that run moto's standalone server (``moto[server]``) on a free 127.0.0.1 port.

The DynamoDB and S3 stores talk to it over HTTP, as to AWS: boto3 finds it through
``AWS_ENDPOINT_URL``, with fake credentials; nothing is patched in-process.

- ``moto_server``: a started :class:`MotoServer` for the session (``.url``), and the
  environment boto3 reads pointed at it for the session.
- ``aws_store_url``: ``make(scheme)`` -> the URL of a new, initialised table or bucket.

Without moto's server these tests are skipped with a loud reason on a developer
machine, and fail when the environment variable CI is "true".
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import socket
import sys
from collections.abc import Callable, Iterator

import pytest
from service_process import ServiceProcess, skip_or_fail

REGION = "us-east-1"


def require_moto_server() -> None:
    missing = [
        name for name in ("moto", "flask_cors", "boto3") if not importlib.util.find_spec(name)
    ]
    if missing:
        skip_or_fail(
            f"AWS STORE TESTS NOT RUN: {', '.join(missing)} not installed. "
            "pip install -e '.[test]' (moto[server], boto3) to test the dynamodb:// and s3:// "
            "result stores against moto's standalone server."
        )


class MotoServer(ServiceProcess):
    """``python -m moto.server`` on a port of its own; stoppable and restartable (outages)."""

    name = "moto's server"
    start_timeout = 20.0

    def __init__(self) -> None:
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    require_moto_server()
    server = MotoServer()
    server.start()
    saved = {key: os.environ.get(key) for key in AWS_ENVIRONMENT}
    os.environ.update(AWS_ENVIRONMENT, AWS_ENDPOINT_URL=server.url)
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: What boto3 reads, pointed at moto (the endpoint is added when the server runs).
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ENDPOINT_URL": "",
}

_names = itertools.count(1)


@pytest.fixture
def aws_store_url(moto_server: MotoServer) -> Callable[..., str]:
    """``make("dynamodb" | "s3" | "dynamodb+overflow")``: the URL of a new table or
    bucket, created by the store's own ``init``."""
    from agentcore_sync.stores import open_store

    def make(kind: str) -> str:
        number = next(_names)
        if kind == "s3":
            url = f"s3://results-{number}/agent"
        elif kind == "dynamodb":
            url = f"dynamodb://results-{number}"
        else:
            url = f"dynamodb://results-{number}?overflow=s3://overflow-{number}/big"
        with open_store(url) as store:
            store.init()  # type: ignore[attr-defined]
        return url

    return make
