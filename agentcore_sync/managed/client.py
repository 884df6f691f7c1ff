"""Talking HTTP to an agent from the command line: its URL, ``GET`` paths, ``POST /invocations``.

Standard library only (urllib), so the CLI needs nothing beyond the package's
dependencies. Proxies are skipped for loopback addresses: an ``HTTP_PROXY``
meant for the internet must not swallow requests to a local agent.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import IO

from ..servers.serving import is_loopback

#: Where the agent is when no URL is given: ``app.run()``'s and the CLI's default.
DEFAULT_URL = "http://127.0.0.1:8080"
#: The environment variable that overrides ``DEFAULT_URL``.
URL_ENV = "AGENTCORE_SYNC_URL"


class AgentUnreachable(Exception):
    """No HTTP answer at all: nothing listening, a timeout, a broken connection."""


def agent_url(text: str | None = None) -> str:
    """The agent's base URL from what a user typed.

    ``8080``, ``:8080``, ``localhost:8080``, ``http://host:8080/`` and
    ``http://host:8080/invocations`` all name the same agent; a prefix under
    which the agent is mounted (``http://host/agent``) is kept. Raises
    ``ValueError`` for anything that is not an http(s) URL.
    """
    text = (text or os.environ.get(URL_ENV) or DEFAULT_URL).strip()
    if text.isdigit() or (text.startswith(":") and text[1:].isdigit()):
        text = "127.0.0.1:" + text.lstrip(":")
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL such as {DEFAULT_URL}")
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    path = parts.path.rstrip("/")
    for suffix in ("/invocations", "/ping"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass
class Reply:
    """An HTTP answer whose body has not been read yet (it may be a live stream)."""

    status: int
    headers: Message
    body: IO[bytes]

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    def read_text(self) -> str:
        try:
            return self.body.read().decode("utf-8", errors="replace")
        finally:
            self.body.close()


class AgentClient:
    """HTTP requests to one agent; every failure to get an answer is ``AgentUnreachable``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        host = urllib.parse.urlsplit(base_url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)

    def get(self, path: str, timeout: float, accept: str = "*/*") -> Reply:
        return self._open(
            urllib.request.Request(self.base_url + path, headers={"Accept": accept}), timeout
        )

    def post(self, path: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
        request = urllib.request.Request(
            self.base_url + path, data=body, headers=headers, method="POST"
        )
        return self._open(request, timeout)

    def _open(self, request: urllib.request.Request, timeout: float) -> Reply:
        try:
            response = self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            # 4xx and 5xx are answers too: their bodies carry the contract's JSON errors.
            return Reply(error.code, error.headers, error)
        except urllib.error.URLError as error:
            raise AgentUnreachable(
                f"cannot reach {request.full_url}: {_reason(error.reason)}"
            ) from None
        except TimeoutError:
            raise AgentUnreachable(
                f"no answer from {request.full_url} within {timeout:g}s"
            ) from None
        except (ConnectionError, OSError) as error:
            raise AgentUnreachable(f"cannot reach {request.full_url}: {_reason(error)}") from None
        return Reply(response.status, response.headers, response)


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is the agent running?)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
