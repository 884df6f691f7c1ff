"""``/ws``: the official SDK's WebSocket route, on threaded WSGI servers.

The official SDK serves an ``@app.websocket`` handler at ``/ws``, called as
``handler(websocket, context)``. Here the server thread that read the upgrade
request holds the connection for its life, through ``simple_websocket``
(wsproto; what flask-sock uses), which needs the connection's socket from the
WSGI environ: gunicorn's threaded workers and werkzeug's server put it there,
waitress does not, so there ``/ws`` answers 501 naming the command that serves it.

- A coroutine handler runs on the runtime's event loop and gets a ``WebSocket``
  whose methods are awaited, as Starlette's. Writes (accept, send, close) run on
  the connection's thread, which waits for the handler anyway; a receive waits
  for the library's reader thread to wake the loop. The loop never blocks on
  the socket.
- A plain function gets a ``SyncWebSocket``: the same methods, blocking, on the
  connection's thread.
- A handler error closes with 1011 and is logged with its traceback; a client
  that leaves raises ``WebSocketDisconnect`` in the handler, which is also
  Starlette's when Starlette is installed (the class the SDK's handlers catch).
- A connection holds a server thread, so it holds an invocation slot
  (``core.admission``) until it ends: refused with 503 when saturated.
- After the session the server must neither write an HTTP answer on the socket
  nor keep the connection for another request: the view ends the WSGI call in
  the way each server reads as "the connection is gone".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import enum
import functools
import importlib.util
import json
import logging
import queue
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Request, Response, request

from ..core.callables import Kind, kind_of
from ..core.context import InvalidHeader, RequestContext, enter_request
from ..core.invocation import refusal
from ..servers.serving import FIX_COMMANDS, note_unprepared_server
from .responses import Answer, answer_of, as_response, json_error

if TYPE_CHECKING:
    from .agent import AgentCore

logger = logging.getLogger("agentcore_sync.websocket")

WS_PATH = "/ws"
#: Seconds the connection waits for the client's answer to its close frame
#: before letting go of the socket.
CLOSE_WAIT = 2.0
#: The WSGI environ keys under which servers hand over the connection's socket.
_SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")
_SERVE_HINT = (
    "serve /ws with gunicorn and agentcore_sync's settings: "
    f"{FIX_COMMANDS['gunicorn']} (or agentcore-sync serve MODULE:APP --server gunicorn)"
)


class WebSocketDisconnect(Exception):
    """The client closed the connection or went away; ``code`` is its close code.

    Raised in the handler by receive and send calls. When Starlette is installed
    the exception raised is also a ``starlette.websockets.WebSocketDisconnect``,
    so that handlers written for the official SDK catch it unchanged.
    """

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason or ""


@functools.cache
def _disconnect_class() -> type[WebSocketDisconnect]:
    """The class to raise: ours, and Starlette's too where it can be imported."""
    try:
        from starlette.websockets import WebSocketDisconnect as StarletteDisconnect
    except ImportError:
        return WebSocketDisconnect
    return type(
        "WebSocketDisconnect",
        (WebSocketDisconnect, StarletteDisconnect),
        {"__module__": __name__, "__doc__": WebSocketDisconnect.__doc__},
    )


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, WebSocketDisconnect):
        return True
    starlette = sys.modules.get("starlette.websockets")
    return starlette is not None and isinstance(exc, starlette.WebSocketDisconnect)


class State(enum.Enum):
    """Where a connection is, as its handler drives it."""

    #: The upgrade request is read; nothing answered yet.
    CONNECTING = "connecting"
    #: Accepted: messages flow both ways.
    OPEN = "open"
    #: Closed by the handler before accepting: answered with HTTP 403, as the SDK does.
    REJECTED = "rejected"
    #: Closed by the handler.
    CLOSED = "closed"
    #: The client closed it, or went away.
    DISCONNECTED = "disconnected"


class _NotifyingEvent(threading.Event):
    """The reader thread's "message arrived" event, which also wakes the event loop."""

    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__()
        self._notify = notify

    def set(self) -> None:
        super().set()
        self._notify()


class Connection:
    """One WebSocket connection's blocking calls, run on the connection's thread.

    The library gets a duplicate of the server's socket: its reader thread
    closes what it was given when it ends, and the server must still find its
    own socket open, to close it the way it closes any connection.
    """

    def __init__(self, environ: dict[str, Any], on_message: Callable[[], None] | None = None):
        self._environ = environ
        #: Called by the library's reader thread when a message arrives or the client leaves.
        self.on_message = on_message
        self._server: Any = None
        # _lock guards state and _left_code. Invariant: state only moves forward,
        # CONNECTING to OPEN or REJECTED, OPEN to CLOSED or DISCONNECTED; _server is
        # set from OPEN on; _left_code is the code of a close by going_away().
        self._lock = threading.Lock()
        self.state = State.CONNECTING
        self._left_code: int | None = None

    def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        if headers:
            raise ValueError("Extra handshake headers are not supported by agentcore_sync's /ws")
        with self._lock:
            if self.state is not State.CONNECTING:
                raise RuntimeError(
                    f"Cannot accept a WebSocket connection that is {self.state.value}"
                )
            from simple_websocket import Server

            _disconnect_class()  # imports Starlette here, not later on the event loop
            sock = server_socket(self._environ)
            assert sock is not None  # the view checked
            environ = {k: v for k, v in self._environ.items() if k not in _SOCKET_KEYS}
            environ["gunicorn.socket"] = own = sock.dup()
            own.settimeout(None)
            event_class: Any = (
                threading.Event
                if self.on_message is None
                else functools.partial(_NotifyingEvent, self.on_message)
            )
            try:
                self._server = Server(
                    environ,
                    subprotocols=[subprotocol] if subprotocol else None,
                    event_class=event_class,
                )
            except BaseException:
                own.close()
                raise
            self.state = State.OPEN

    def receive(self) -> str | bytes:
        """The next message, waiting for it."""
        server = self._open("receive")
        from simple_websocket import ConnectionClosed

        try:
            message = server.receive()
        except ConnectionClosed:
            raise self._gone() from None
        if message is None:  # pragma: no cover - only with a timeout, never given
            raise self._gone()
        return message  # type: ignore[no-any-return]

    def take(self) -> str | bytes | None:
        """The next message if one arrived, else None; never waits."""
        server = self._open("receive")
        # Read before the buffer: the reader appends a client's last messages
        # before it marks the connection closed.
        connected = server.connected
        with contextlib.suppress(IndexError):
            return server.input_buffer.pop(0)  # type: ignore[no-any-return]
        if not connected:
            raise self._gone()
        return None

    def send(self, data: str | bytes) -> None:
        server = self._open("send")
        from simple_websocket import ConnectionClosed

        try:
            server.send(data)
        except (ConnectionClosed, OSError):
            raise self._gone() from None

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection; before ``accept``, refuse it (HTTP 403). Closing
        a connection already closed does nothing."""
        with self._lock:
            if self.state is State.CONNECTING:
                self.state = State.REJECTED
                return
            if self.state is not State.OPEN:
                return
            self.state = State.CLOSED
            server = self._server
        from simple_websocket import ConnectionClosed

        with contextlib.suppress(ConnectionClosed, OSError):
            server.close(code, reason)

    def going_away(self, code: int) -> None:
        """From any thread: close with ``code`` because the server stops; the
        handler's next receive or send raises the disconnect, with that code."""
        with self._lock:
            if self.state is not State.OPEN:
                return
            self.state = State.DISCONNECTED
            self._left_code = code
            server = self._server
        from simple_websocket import ConnectionClosed

        with contextlib.suppress(ConnectionClosed, OSError):
            server.close(code, "server shutting down")
        server.event.set()  # wakes a receive waiting for the reader thread

    def finish(self) -> None:
        """After the handler: close if still open, wait a little for the client's
        close, then end the reader thread and leave the socket to the server."""
        self.close()
        server = self._server
        if server is None:
            return
        server.thread.join(CLOSE_WAIT)
        # Ends the reader's read if the client answered nothing, and leaves the
        # server nothing to wait for when it closes the connection (gunicorn
        # lingers for the client's end on its main thread).
        sock = server_socket(self._environ)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.thread.join(CLOSE_WAIT)

    def _open(self, action: str) -> Any:
        state = self.state
        if state is State.CONNECTING or state is State.REJECTED:
            raise RuntimeError(f'WebSocket is not connected: call "accept" before "{action}"')
        if state is State.CLOSED:
            raise RuntimeError(f'Cannot "{action}" once the WebSocket is closed')
        if state is State.DISCONNECTED:
            raise self._gone()
        return self._server

    def _gone(self) -> WebSocketDisconnect:
        with self._lock:
            if self.state is State.OPEN:
                self.state = State.DISCONNECTED
        server = self._server
        if self._left_code is not None:
            return _disconnect_class()(self._left_code, "server shutting down")
        return _disconnect_class()(int(server.close_reason), server.close_message)


# -- the handler's side: Starlette's WebSocket methods ---------------------------


def _text_of(message: str | bytes) -> str:
    if not isinstance(message, str):
        raise TypeError("Expected a text WebSocket message, received a binary one")
    return message


def _bytes_of(message: str | bytes) -> bytes:
    if not isinstance(message, bytes):
        raise TypeError("Expected a binary WebSocket message, received a text one")
    return message


def _json_of(message: str | bytes, mode: str) -> Any:
    _check_mode(mode)
    return json.loads(_text_of(message) if mode == "text" else _bytes_of(message).decode("utf-8"))


def _json_message(data: Any, mode: str) -> str | bytes:
    _check_mode(mode)
    # Starlette's encoding, so that clients see the same bytes.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text if mode == "text" else text.encode("utf-8")


def _check_mode(mode: str) -> None:
    if mode not in ("text", "binary"):
        raise RuntimeError('The "mode" argument should be "text" or "binary".')


def _asgi_message(message: str | bytes) -> dict[str, Any]:
    key = "text" if isinstance(message, str) else "bytes"
    return {"type": "websocket.receive", key: message}


class _Handshake:
    """What both kinds of WebSocket tell of the upgrade request."""

    def __init__(self, connection: Connection, req: Request) -> None:
        self._connection = connection
        self._request = req

    @property
    def headers(self) -> Any:
        """The upgrade request's headers (case-insensitive)."""
        return self._request.headers

    @property
    def query_params(self) -> Any:
        """The upgrade request's query string arguments."""
        return self._request.args

    @property
    def url(self) -> str:
        return self._request.url  # type: ignore[no-any-return]


class SyncWebSocket(_Handshake):
    """The WebSocket handed to a plain-function handler: Starlette's methods, blocking."""

    def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        self._connection.accept(subprotocol, headers)

    def receive(self) -> dict[str, Any]:
        """The next message as an ASGI event (``websocket.receive``); raises on disconnect."""
        return _asgi_message(self._connection.receive())

    def receive_text(self) -> str:
        return _text_of(self._connection.receive())

    def receive_bytes(self) -> bytes:
        return _bytes_of(self._connection.receive())

    def receive_json(self, mode: str = "text") -> Any:
        return _json_of(self._connection.receive(), mode)

    def send_text(self, data: str) -> None:
        self._connection.send(str(data))

    def send_bytes(self, data: bytes) -> None:
        self._connection.send(bytes(data))

    def send_json(self, data: Any, mode: str = "text") -> None:
        self._connection.send(_json_message(data, mode))

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self._connection.close(code, reason)

    def iter_text(self) -> Iterator[str]:
        """Text messages until the client leaves."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield self.receive_text()

    def iter_bytes(self) -> Iterator[bytes]:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield self.receive_bytes()

    def iter_json(self) -> Iterator[Any]:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield self.receive_json()


class WebSocket(_Handshake):
    """The WebSocket handed to a coroutine handler: Starlette's methods, awaited.

    Runs on the runtime's event loop. Calls that write to the socket are handed
    to the connection's thread (``serve_writes``), in order; receiving waits on
    the loop for the library's reader thread to say a message arrived.
    """

    def __init__(
        self, connection: Connection, req: Request, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(connection, req)
        self._loop = loop
        self._arrived = asyncio.Event()
        self._writes: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        # _writes_lock guards _taking_writes. Invariant: while it is True, the
        # connection's thread runs every call put in _writes.
        self._writes_lock = threading.Lock()
        self._taking_writes = True

    def wake(self) -> None:
        """Called by the reader thread when a message arrives or the client leaves."""
        self._loop.call_soon_threadsafe(self._arrived.set)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await self._on_connection_thread(self._connection.accept, subprotocol, headers)

    async def receive(self) -> dict[str, Any]:
        """The next message as an ASGI event (``websocket.receive``); raises on disconnect."""
        return _asgi_message(await self._next_message())

    async def receive_text(self) -> str:
        return _text_of(await self._next_message())

    async def receive_bytes(self) -> bytes:
        return _bytes_of(await self._next_message())

    async def receive_json(self, mode: str = "text") -> Any:
        return _json_of(await self._next_message(), mode)

    async def send_text(self, data: str) -> None:
        await self._on_connection_thread(self._connection.send, str(data))

    async def send_bytes(self, data: bytes) -> None:
        await self._on_connection_thread(self._connection.send, bytes(data))

    async def send_json(self, data: Any, mode: str = "text") -> None:
        await self._on_connection_thread(self._connection.send, _json_message(data, mode))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._on_connection_thread(self._connection.close, code, reason)

    async def iter_text(self) -> AsyncIterator[str]:
        """Text messages until the client leaves."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield await self.receive_text()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield await self.receive_bytes()

    async def iter_json(self) -> AsyncIterator[Any]:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield await self.receive_json()

    async def _next_message(self) -> str | bytes:
        while True:
            # Cleared before looking: a message that arrives after the look sets it again.
            self._arrived.clear()
            message = self._connection.take()
            if message is not None:
                return message
            await self._arrived.wait()

    async def _on_connection_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        loop = self._loop
        future = loop.create_future()

        def run() -> None:
            try:
                result = call(*args)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        with self._writes_lock:
            if not self._taking_writes:
                raise RuntimeError("The WebSocket session has ended")
            self._writes.put(run)
        return await future

    def serve_writes(self, handler_done: concurrent.futures.Future[Any]) -> None:
        """On the connection's thread: run the handler's socket calls until it ends."""
        handler_done.add_done_callback(lambda _: self._writes.put(None))
        while (call := self._writes.get()) is not None:
            call()
        with self._writes_lock:
            self._taking_writes = False
        while True:  # calls of tasks that outlived the handler, put before the end
            try:
                call = self._writes.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                call()


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class OpenWebSockets:
    """The connections a runtime holds open, so that a stopping server can close them.

    Without it an open WebSocket holds its worker until the server's graceful
    timeout runs out, and its client then loses the connection without a close
    code; uvicorn (the official SDK's server) closes them with 1012.
    """

    def __init__(self) -> None:
        # _lock guards _open. Invariant: _open holds the connections of the
        # sessions running now, accepted or not.
        self._lock = threading.Lock()
        self._open: set[Connection] = set()

    @contextlib.contextmanager
    def holding(self, connection: Connection) -> Iterator[None]:
        with self._lock:
            self._open.add(connection)
        try:
            yield
        finally:
            with self._lock:
                self._open.discard(connection)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def going_away(self, code: int = 1012) -> int:
        """Close every open connection with ``code``; how many there were."""
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            connection.going_away(code)
        return len(connections)


# -- the route -------------------------------------------------------------------


def check_handler(func: Callable[..., Any]) -> None:
    """Refuse, at registration, a handler that cannot serve a connection."""
    if not callable(func):
        raise TypeError(f"@websocket expects a function, got {type(func).__name__}")
    if kind_of(func) in (Kind.GENERATOR, Kind.ASYNC_GENERATOR):
        raise TypeError(
            "A WebSocket handler is a coroutine function or a plain function called as "
            "handler(websocket, context), not a generator: send each item with send_json()"
        )


def server_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The connection's socket, where the server hands it to the app."""
    for key in _SOCKET_KEYS:
        sock = environ.get(key)
        if sock is not None:
            return sock  # type: ignore[no-any-return]
    return None


@functools.cache
def _library_installed() -> bool:
    return importlib.util.find_spec("simple_websocket") is not None


def add_websocket_route(bp: Blueprint, agent: AgentCore) -> OpenWebSockets:
    """Serve ``agent``'s WebSocket handler at ``/ws`` on ``bp``; returns its open connections."""
    connections = OpenWebSockets()

    # A WebSocket rule: werkzeug matches upgrade requests to it, and answers
    # others with 400 (405 for methods other than GET).
    @bp.route(WS_PATH, methods=["GET"], websocket=True, endpoint="websocket")
    def websocket() -> Any:
        # The request itself: the handler may outlive Flask's request context.
        current = request._get_current_object()  # type: ignore[attr-defined]
        return as_response(serve_websocket(agent, connections, current))

    return connections


def serve_websocket(agent: AgentCore, connections: OpenWebSockets, req: Request) -> Answer:
    """One WebSocket connection, from its upgrade request to its end."""
    environ = req.environ
    if agent.served_by is None:
        note_unprepared_server(agent, environ)
    if not environ.get("HTTP_SEC_WEBSOCKET_KEY"):
        return json_error(400, "Invalid WebSocket upgrade", details="no Sec-WebSocket-Key header")
    if server_socket(environ) is None:
        server = str(environ.get("SERVER_SOFTWARE") or "this server").split("/")[0]
        return json_error(
            501,
            "WebSocket not supported by this server",
            details=f"{server} cannot hold a WebSocket connection; {_SERVE_HINT}",
        )
    if not _library_installed():
        return json_error(
            501,
            "WebSocket support is not installed",
            details="pip install 'agentcore_sync[ws]' (simple-websocket)",
        )
    handler = agent.websocket_handler
    if handler is None:
        logger.error("No WebSocket handler defined")
        return json_error(403, "No WebSocket handler defined")
    limiter = agent.limiter
    if not limiter.try_acquire():
        return answer_of(refusal(limiter, "a WebSocket"), agent.loop)
    try:
        return contextvars.copy_context().run(_session, agent, connections, handler, req)
    finally:
        limiter.release()


def _session(
    agent: AgentCore, connections: OpenWebSockets, handler: Callable[..., Any], req: Request
) -> Answer:
    try:
        context = enter_request(req.environ, req)
    except InvalidHeader as exc:
        logger.warning("Refused a WebSocket: %s", exc)
        return json_error(400, str(exc))
    coroutine = kind_of(handler) is Kind.COROUTINE
    loop = agent.loop.loop if coroutine else None
    connection = Connection(req.environ)
    try:
        try:
            with connections.holding(connection):
                if loop is not None:
                    _run_coroutine(agent, handler, connection, req, context, loop)
                else:
                    handler(SyncWebSocket(connection, req), context)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            if _is_disconnect(exc):
                logger.debug("WebSocket disconnected")
            elif connection.state is State.CONNECTING:
                logger.exception("WebSocket handler failed before accepting the connection")
                return json_error(500, str(exc))
            else:
                logger.exception("WebSocket handler failed")
                connection.close(1011)
        if connection.state is State.CONNECTING:
            logger.error("WebSocket handler returned without accepting the connection")
            return json_error(
                500, "The WebSocket handler returned without accepting the connection"
            )
        if connection.state is State.REJECTED:
            return json_error(403, "WebSocket connection refused by the handler")
    finally:
        connection.finish()
    return _ConnectionTaken()


def _run_coroutine(
    agent: AgentCore,
    handler: Callable[..., Any],
    connection: Connection,
    req: Request,
    context: RequestContext,
    loop: asyncio.AbstractEventLoop,
) -> None:
    ws = WebSocket(connection, req, loop)
    connection.on_message = ws.wake
    done = agent.loop.submit(handler(ws, context))
    ws.serve_writes(done)
    done.result()


class _ConnectionTaken(Response):
    """The end of a WSGI call whose connection became a WebSocket: nothing may be
    written on it, and it must not serve another request. Each server has its
    own way to hear "the connection is gone" from the app."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if "gunicorn.socket" in environ:
            # gunicorn's workers close the connection, writing nothing.
            raise StopIteration("WebSocket session ended")
        # werkzeug's server drops the connection.
        raise ConnectionError("WebSocket session ended")


def note_websocket_server(agent: AgentCore, server: str) -> None:
    """At start, under a server that cannot hold WebSockets: say where ``/ws`` is served."""
    if agent.websocket_handler is not None:
        logger.warning(
            "WebSocket /ws is not served on %s (it cannot hold a connection; /ws answers 501): %s",
            server,
            _SERVE_HINT,
        )
