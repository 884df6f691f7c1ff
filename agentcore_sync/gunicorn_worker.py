"""The shipped config's gunicorn worker: gthread, answering plain pings on its I/O thread.

gthread's main thread polls the connections and hands each request to a pool
thread, then takes the connection back; for ``/ping`` that round trip costs
about twenty times what the answer does. Here the main thread looks at a
readable connection first: when the waiting bytes are exactly one plain
``GET /ping`` (``inline_ping.is_plain_ping``) and the app allows it, it reads
them and writes the answer itself. Everything else goes to the pool as in
gthread. New connections also wait in the poller, not on a pool thread, for
their first request, so a ping on a fresh connection does not wait for a
thread either.

It needs the gthread of a recent gunicorn, whose main thread alone keeps the
idle connections (``keepalived_conns``, ``pending_conns``). With an older
gunicorn, TLS, access logging or ``pre_request``/``post_request`` hooks, it
serves every request as gthread does, and says why once in the log.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import deque
from functools import partial
from typing import Any

import gunicorn
from gunicorn.workers import gthread

from .inline_ping import MAX_HEAD, InlinePing, is_plain_ping

#: Seconds a stopping worker keeps connections that have not sent a request.
_STOP_LINGER = getattr(gthread, "STOP_KEEPALIVE_LINGER", 2.0)
_EXTRA_HEADERS = b"Server: %s\r\nConnection: keep-alive\r\n" % gunicorn.SERVER.encode("latin-1")


class ThreadWorker(gthread.ThreadWorker):
    """gthread, with plain pings answered by the main thread.

    ``keepalived_conns`` and ``pending_conns`` are gthread's: touched only by
    the main thread, each ordered by ``conn.timeout``, which is why a
    connection answered here moves to the end of its queue.
    """

    _inline: InlinePing | None = None

    def run(self) -> None:
        # The app is loaded and post_worker_init has run: what is served is known.
        self._inline = self._inline_ping()
        super().run()

    def _inline_ping(self) -> InlinePing | None:
        cfg = self.cfg
        refusal = None
        if not all(hasattr(self, name) for name in ("keepalived_conns", "pending_conns")):
            refusal = f"gunicorn {gunicorn.__version__}'s gthread keeps connections differently"
        elif cfg.is_ssl or getattr(cfg, "protocol", "http") != "http" or not cfg.keepalive:
            refusal = "TLS, a protocol other than HTTP, or keepalive 0 is configured"
        elif getattr(self.log, "access_log_enabled", True):
            refusal = "access logging is on"
        elif any(
            cfg.settings[hook].get() is not type(cfg.settings[hook]).default
            for hook in ("pre_request", "post_request")
        ):
            refusal = "a pre_request or post_request hook is set"
        inline = None if refusal else InlinePing.for_served(self.wsgi, _EXTRA_HEADERS)
        if refusal:
            self.log.info("Serving /ping on pool threads: %s", refusal)
        elif inline is None:
            self.log.info("Serving /ping on pool threads: the app is wrapped or not the runtime's")
        return inline

    def enqueue_req(self, conn: Any) -> None:
        if self._inline is not None and not conn.initialized and not conn.data_ready:
            # A new connection: wait for its first request in the poller, as
            # gthread's own pending connections do, instead of on a pool thread.
            conn.set_timeout()
            self.pending_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
            )
            return
        super().enqueue_req(conn)

    def murder_pending(self) -> None:
        if not self.alive and self._inline is not None:
            # Stopping. gthread lets a new connection that sends nothing go after
            # its 5 s wait on a pool thread; kept in the poller instead, it would
            # hold the worker's exit until its keepalive timeout. So, as gthread
            # does with idle kept-alive connections, give it a short linger.
            deadline = time.monotonic() + _STOP_LINGER
            for conn in self.pending_conns:  # one deadline for all keeps their order
                conn.timeout = min(conn.timeout, deadline)
        super().murder_pending()

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        if not self._answer_ping(conn, self.keepalived_conns):
            super().on_client_socket_readable(conn, client)

    def on_pending_socket_readable(self, conn: Any, client: Any) -> None:
        if not self._answer_ping(conn, self.pending_conns):
            super().on_pending_socket_readable(conn, client)

    def _answer_ping(self, conn: Any, queue: deque[Any]) -> bool:
        """Answer a plain ping waiting on ``conn``; whether it was one."""
        inline = self._inline
        if (
            inline is None
            or not self.alive
            or conn.is_http2
            # gthread counts requests for max_requests; the last one restarts the worker.
            or self.nr + 1 >= self.max_requests
            # Bytes read ahead by the parser come before those on the socket.
            or (conn.parser is not None and conn.parser.unreader.buf.getvalue())
        ):
            return False
        try:
            head = conn.sock.recv(MAX_HEAD + 1, socket.MSG_PEEK)
        except OSError:
            return False  # the pool thread meets the error and closes as gthread does
        if not is_plain_ping(head):
            return False
        answer = inline.response()
        if answer is None:
            return False
        conn.sock.recv(len(head))
        self.nr += 1
        queue.remove(conn)
        try:
            sent = conn.sock.send(answer)
        except OSError:
            sent = 0
        if sent != len(answer):
            # A full send buffer: the client is not reading its answers. The
            # main thread never waits, so the connection goes.
            self.log.info("Closing a connection whose client does not read its /ping answer")
            self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
            return True
        conn.set_timeout()
        queue.append(conn)
        return True
