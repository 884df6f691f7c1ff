"""Answering ``/ping`` on the server's I/O thread, without a pool thread.

waitress and gunicorn's gthread worker read requests on one I/O thread and hand
each to a pool thread. For ``/ping`` the hand-off is nearly all the cost — a
thread wake-up, a trip back to the I/O thread, a poller registration — against
2 µs to compute the status; and while long invocations hold every pool thread,
a ping waits behind them. So when the served WSGI callable is the runtime's own
app and nothing registered on it would run on ``/ping`` (the conditions of the
fast path: no custom ``@ping`` function, hooks, signal receivers or middleware),
the I/O thread writes the answer itself. Anything else about the request —
another method or path, a body, ``Connection: close``, an upgrade — leaves it to
the server's usual path, which answers it as before. The servers reach it only
where their own version gate is on (``core.versions``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

#: Requests larger than this are never answered inline (a plain ping is ~100 bytes).
MAX_HEAD = 4096

_REQUEST_LINE = b"GET /ping HTTP/1.1\r\n"
# RFC 9110 field syntax, without obs-fold: a token, a colon, a value of visible
# characters, spaces and tabs. Anything else is for the server's parser to judge.
_FIELD = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*(?:[\x21-\x7e\x80-\xff][\x20-\x7e\x80-\xff\t]*)?"
)
# Fields that change how the request is framed or the connection is used.
_FRAMING_FIELDS = frozenset(
    (b"content-length", b"transfer-encoding", b"upgrade", b"expect", b"http2-settings", b"te")
)
_KEEP_ALIVE = b"keep-alive"


def is_plain_ping(head: bytes) -> bool:
    """Whether ``head`` is exactly one complete ``GET /ping HTTP/1.1`` request without a
    body that keeps its connection open: one Host field, no field that frames a body or
    changes the connection, every line well formed. For servers that have not parsed it."""
    if len(head) > MAX_HEAD or not head.startswith(_REQUEST_LINE) or not head.endswith(b"\r\n\r\n"):
        return False
    hosts = 0
    # An empty line before the end (a second request behind this one) fails the match.
    for line in head[len(_REQUEST_LINE) : -4].split(b"\r\n"):
        if _FIELD.fullmatch(line) is None:
            return False
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in _FRAMING_FIELDS:
            return False
        if name == b"connection" and value.strip(b" \t").lower() != _KEEP_ALIVE:
            return False
        hosts += name == b"host"
    return hosts == 1


class InlinePing:
    """Builds the raw HTTP answer to a plain ``GET /ping`` for one served WSGI callable.

    The served callable offers the answer's body through ``inline_ping()``
    (``BedrockAgentCoreApp`` does); anything else, a wrapped app among them, is
    served as usual. ``extra_headers`` are the lines the server adds to each of
    its answers (``Server``, ``Connection``), so that an inline answer looks
    like the others.
    """

    def __init__(self, ping_body: Callable[[], bytes | None], extra_headers: bytes) -> None:
        self._ping_body = ping_body
        self._extra_headers = extra_headers

    @classmethod
    def for_served(cls, wsgi: Any, extra_headers: bytes) -> InlinePing | None:
        """An ``InlinePing`` when ``wsgi`` offers its ping body; None otherwise."""
        offer = getattr(wsgi, "inline_ping", None)
        ping_body = offer() if callable(offer) else None
        return cls(ping_body, extra_headers) if ping_body is not None else None

    def response(self) -> bytes | None:
        """The whole answer, or None when the app must be called for this ping."""
        body = self._ping_body()
        if body is None:
            return None
        return b"".join(
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ",
                b"%d\r\nDate: " % len(body),
                _http_date(),
                b"\r\n",
                self._extra_headers,
                b"\r\n",
                body,
            )
        )


_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    # One formatting per second: two threads racing here compute the same text.
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = formatdate(now, usegmt=True).encode("ascii")
        _date_cache = (now, text)
    return text
