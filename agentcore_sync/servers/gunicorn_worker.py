"""The shipped config's gunicorn worker: gthread, with fewer trips between its threads.

gthread's main thread polls the connections and hands each request to a pool
thread, then takes the connection back. Every trip, and every system call that
releases the GIL on the way, is a thread switch in a busy worker; they, not the
app, are most of the cost of a small request. So this worker:

- answers a plain ``GET /ping`` on the main thread: when the waiting bytes are
  exactly one (``inline_ping.is_plain_ping``) and the app allows it, it reads
  them and writes the answer itself, so a ping never waits for a thread. New
  connections wait in the poller, not on a pool thread, for their first request.
- keeps a connection on its pool thread while the client's next request comes
  within ``NEXT_REQUEST_WAIT`` and no other connection waits for a thread,
  instead of handing it back to the poller after every answer.
- skips the socket mode changes that change nothing (``_KeptSocket``) and the
  bounded drain of a request body the app read to its end.

Everything else is gthread's. All of this reaches into gthread's internals, so
it runs only on the gunicorn versions CI tests it on
(``core.versions.GUNICORN_WORKER``); on any other, this worker is gthread
itself, and the shipped settings pick plain ``gthread`` there. With TLS, access
logging or ``pre_request``/``post_request`` hooks, pings go through the pool as
in gthread, and the log says why once.

Design: the main thread owns the poller and gthread's queues of idle
connections (``keepalived_conns``, ``pending_conns``) and answers inline
pings; a pool thread owns a connection from ``enqueue_req`` until its
``handle`` returns; ``_waiting`` is shared (see its lock).
"""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from collections import deque
from functools import partial
from typing import Any

import gunicorn
from gunicorn.http.body import LengthReader
from gunicorn.workers import gthread

from ..core.versions import GUNICORN_WORKER, gate
from .inline_ping import MAX_HEAD, InlinePing, is_plain_ping
from .serving import runtimes_of

#: Seconds a stopping worker keeps connections that have not sent a request.
_STOP_LINGER = getattr(gthread, "STOP_KEEPALIVE_LINGER", 2.0)
_EXTRA_HEADERS = b"Server: %s\r\nConnection: keep-alive\r\n" % gunicorn.SERVER.encode("latin-1")
#: Seconds a pool thread waits for the next request on a connection it has just
#: answered. A client sending requests back to back sends the next one within a
#: fraction of a millisecond; one that does not is not worth a thread.
NEXT_REQUEST_WAIT = 0.002


class _KeptSocket(socket.socket):
    """A connection's socket whose mode changes are system calls only when they change it.

    gthread sets blocking mode before each request and the parser restores the
    timeout after each; each is an ioctl that releases the GIL, which a busy
    worker pays for with a thread switch. Python keeps the descriptor's mode in
    step with ``gettimeout()``, so a change to the same timeout changes nothing.
    """

    __slots__ = ()

    def settimeout(self, value: float | None) -> None:
        if value != self.gettimeout():
            super().settimeout(value)

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)


def _body_read_to_end(request: Any) -> bool:
    """Whether the app read ``request``'s body to its end (``False`` when unsure)."""
    body = getattr(request, "body", None)
    if body is None:
        return True
    reader = body.reader
    return (
        type(reader) is LengthReader
        and reader.length == 0
        and not body.buf.tell()
        and not body.failed
    )


class ThreadWorker(gthread.ThreadWorker):
    """gthread, with plain pings answered by the main thread and connections kept on
    their pool thread while their requests come back to back.

    ``keepalived_conns`` and ``pending_conns`` are gthread's: touched only by
    the main thread, each ordered by ``conn.timeout``, which is why a
    connection answered here moves to the end of its queue.
    """

    _inline: InlinePing | None = None
    _keeps_connections = False
    #: Whether this gunicorn is one the accelerations are tested on; if not, gthread.
    _accelerated = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # _waiting_lock guards _waiting. Invariant: _waiting is the number of
        # connections submitted to the pool whose handle() has not started, so
        # a pool thread keeps its connection only while no other waits for it.
        self._waiting_lock = threading.Lock()
        self._waiting = 0

    def run(self) -> None:
        decided = gate(*GUNICORN_WORKER)
        self._accelerated = decided.on
        if not decided.on:
            self.log.info("Serving as gthread: %s", decided.describe())
        else:
            # TLS would hide bytes read ahead in the SSL object from a poll of the socket.
            self._keeps_connections = not self.cfg.is_ssl
            # The app is loaded and post_worker_init has run: what is served is known.
            self._inline = self._inline_ping()
        if any(getattr(r, "websocket_handler", None) for r in runtimes_of(self.wsgi)):
            # The WSGI call of /ws holds its pool thread for the connection's life
            # and ends by raising StopIteration, which gthread reads as "close the
            # connection, write nothing": no answer on it, no keep-alive.
            self.log.info(
                "Serving WebSocket /ws: each connection holds one of the %d threads",
                self.cfg.threads,
            )
        super().run()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: stop as gthread does, and close open WebSockets (``/ws``), which
        would otherwise hold their threads until the graceful timeout runs out."""
        super().handle_exit(sig, frame)
        closers = [
            close
            for runtime in runtimes_of(getattr(self, "wsgi", None))
            if (close := getattr(runtime, "close_websockets", None)) is not None
        ]
        if closers:
            # Not in the signal handler itself: closing takes locks and writes to sockets.
            threading.Thread(
                target=lambda: [close() for close in closers],
                name="websockets-going-away",
                daemon=True,  # a client that reads nothing must not hold the exit
            ).start()

    def _inline_ping(self) -> InlinePing | None:
        cfg = self.cfg
        refusal = None
        if cfg.is_ssl or getattr(cfg, "protocol", "http") != "http" or not cfg.keepalive:
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

    def handle(self, conn: Any) -> Any:
        """gthread's handle(), then the connection's next requests while they come promptly."""
        if not self._accelerated:
            return super().handle(conn)
        with self._waiting_lock:
            self._waiting -= 1
        keepalive = super().handle(conn)
        while keepalive is True and self._next_request_comes(conn):
            keepalive = super().handle(conn)
        return keepalive

    def _next_request_comes(self, conn: Any) -> bool:
        """Whether the client sent its next request within ``NEXT_REQUEST_WAIT``,
        when it is worth waiting for: no other connection waits for a thread."""
        if not self._keeps_connections or not self.alive:
            return False
        if conn.parser.unreader.buf.getvalue():
            return True  # read ahead with the last request
        with self._waiting_lock:
            if self._waiting:
                return False
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        # Readable or hung up: either way handle() reads it next.
        return bool(poller.poll(NEXT_REQUEST_WAIT * 1000))

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        # gthread drains what is left of the body under a timeout, which sets
        # and restores the socket's timeout even when nothing is left.
        if self._accelerated and keepalive and _body_read_to_end(conn.parser.mesg):
            return True
        return super()._keepalive_after(conn, keepalive)  # type: ignore[no-any-return]

    def enqueue_req(self, conn: Any) -> None:
        if not self._accelerated:
            super().enqueue_req(conn)
            return
        if type(conn.sock) is socket.socket:
            conn.sock.__class__ = _KeptSocket  # same layout: only the methods change
        if self._inline is not None and not conn.initialized and not conn.data_ready:
            # A new connection: wait for its first request in the poller, as
            # gthread's own pending connections do, instead of on a pool thread.
            conn.set_timeout()
            self.pending_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
            )
            return
        with self._waiting_lock:
            self._waiting += 1
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
        if self._inline is None or not self._answer_ping(conn, self.keepalived_conns):
            super().on_client_socket_readable(conn, client)

    def on_pending_socket_readable(self, conn: Any, client: Any) -> None:
        if self._inline is None or not self._answer_ping(conn, self.pending_conns):
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
