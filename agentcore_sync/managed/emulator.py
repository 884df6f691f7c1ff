"""A local AgentCore Runtime: sessions as processes, the lifecycle that ends them.

``Emulator`` serves the data plane (``dataplane``) on 127.0.0.1, so that boto3's
own ``bedrock-agentcore`` client runs against it with ``endpoint_url=``. Each
``runtimeSessionId`` gets an agent process of its own (``microvm``), started by
its first invocation; the keeper pings every session and ends it as the
managed runtime would (``lifecycle``): idle timeout, maximum lifetime, no
answer to ``/ping``. An invocation for an ended session starts a new one.

Design: request threads (one per connection, from ``ThreadingHTTPServer``)
start sessions and carry invocations; the keeper thread owns each running
session's probe and lifecycle and decides its end; an ending session is
stopped on a thread of its own (SIGTERM, then SIGKILL after the grace), so
that no other session waits for it. A session's lifecycle belongs to the
thread that starts it until the session is ``RUNNING``, then to the keeper.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import json
import logging
import os
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..models import SESSION_HEADER
from ..observability.logging import iso_timestamp
from . import dataplane
from .client import AgentClient, AgentUnreachable, Reply
from .dataplane import ErrorType, Invoke, ServiceError, StopSession
from .lifecycle import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_STUCK_AFTER,
    LIFECYCLE_MIN,
    PING_INTERVAL,
    Probe,
    Settings,
    SimulatedSession,
    View,
)
from .microvm import MicroVM, Server, StartFailed
from .probe import PING_TIMEOUT, AgentProbe

logger = logging.getLogger("agentcore_sync.emulator")

#: The managed runtime's bound on a session's start (its error names 60 s).
START_TIMEOUT = 60.0
#: Seconds between SIGTERM and SIGKILL when a session ends.
STOP_GRACE = 10.0
#: Pings without an answer before a session is ended as unhealthy.
UNHEALTHY_AFTER = 3
#: Sessions held at once; one more invocation is throttled.
MAX_SESSIONS = 16
#: Client connections open at once (each holds a thread); one more is refused.
MAX_CONNECTIONS = 256
#: Seconds of silence from a client before its connection is closed.
IDLE_CONNECTION_TIMEOUT = 120.0
#: How long a read of an agent's answer may wait (a stream may be silent that long).
INVOKE_READ_TIMEOUT = 3600.0
#: Bytes of a StopRuntimeSession body read (its JSON carries only a client token).
STOP_BODY_MAX = 64 * 1024
#: Events kept for ``Emulator.events``.
EVENTS_KEPT = 1000


class SessionState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    ENDING = "ending"
    ENDED = "ended"


class Session:
    """One runtime session and its agent process."""

    def __init__(self, session_id: str, microvm: MicroVM, settings: Settings) -> None:
        self.id = session_id
        self.microvm = microvm
        self.state = SessionState.STARTING
        #: Set once the session is RUNNING or its start failed (``start_error``).
        self.ready = threading.Event()
        self.start_error: ServiceError | None = None
        self.cold_start: float | None = None
        self.started_at: float | None = None
        self.in_flight = 0
        self.last_activity: float | None = None
        self.end_reason: str | None = None
        self.lifecycle = SimulatedSession(settings)
        #: Made once the process has its port (``launch``): the keeper's polls, and the
        #: client that hands the session its invocations.
        self.probe: AgentProbe | None = None
        self.client: AgentClient | None = None
        #: The keeper's latest view; read by the live display.
        self.view: View | None = None
        self.failed_pings = 0
        self.ended = threading.Event()

    def recorded(self) -> tuple[str | None, float | None]:
        # An invocation in flight holds the idle timeout as one made just now would.
        busy = self.in_flight > 0
        return self.id, time.time() if busy else self.last_activity


@dataclass(frozen=True)
class SessionSummary:
    """What the live view shows of a session."""

    id: str
    state: SessionState
    pid: int | None
    home: str | None
    cold_start: float | None
    in_flight: int
    view: View | None


class Emulator:
    """The data plane on ``host:port`` and the sessions it holds.

    ``target`` is ``MODULE:APP`` as ``agentcore-sync serve`` takes it, found from
    ``workdir`` (the current directory by default). ``start()`` returns once it
    listens (``url``); ``stop()`` ends every session and reaps every process.
    Also a context manager. Raises ``ValueError`` for timers the managed
    runtime could not have (beyond 8 h, an idle timeout over the lifetime).
    """

    def __init__(
        self,
        target: str,
        *,
        server: Server | str = Server.WAITRESS,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = PING_INTERVAL,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
        stuck_after: float = DEFAULT_STUCK_AFTER,
        max_sessions: int = MAX_SESSIONS,
        max_connections: int = MAX_CONNECTIONS,
        start_timeout: float = START_TIMEOUT,
        stop_grace: float = STOP_GRACE,
        log_dir: str | os.PathLike[str] | None = None,
        workdir: str | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if max_sessions < 1 or max_connections < 1:
            raise ValueError(
                f"max_sessions and max_connections must be at least 1; got {max_sessions} "
                f"and {max_connections}"
            )
        if ping_interval <= 0:
            raise ValueError(f"ping_interval must be positive; got {ping_interval:g}")
        self.target = target
        self.server_kind = Server(server)
        #: Timers shorter than the managed runtime allows are accepted, with a warning.
        self.settings = Settings(idle_timeout, max_lifetime, stuck_after, short_ok=True)
        self.ping_interval = ping_interval
        self.max_sessions = max_sessions
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.workdir = workdir or os.getcwd()
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="agentcore-emulator-"))
        self.on_event = on_event
        #: The latest events (dicts, as logged), oldest first.
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        # Guards _sessions and every Session's state, in_flight and last_activity: all are
        # written under it. The keeper's polls read in_flight and last_activity without it
        # (Session.recorded): a value a request thread is changing is one ping late.
        # Invariants: each id maps to its one STARTING or RUNNING session; a session
        # leaves the map when it starts ENDING and never returns (the id's next
        # invocation makes a new one); len(_sessions) <= max_sessions.
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._enders: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._http = _DataPlaneServer((host, port), _Handler, max_connections)
        self._http.emulator = self
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    # -- running it

    def start(self) -> Emulator:
        for name, target in (("serve", self._http.serve_forever), ("keeper", self._keep)):
            thread = threading.Thread(target=target, name=f"emulator-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        short = [
            name
            for name, value in (
                ("idle timeout", self.settings.idle_timeout),
                ("maximum lifetime", self.settings.max_lifetime),
            )
            if value < LIFECYCLE_MIN
        ]
        self._event(
            "emulator_started",
            f"AgentCore Runtime emulator for {self.target} at {self.url}; session logs in "
            f"{self.log_dir}",
            url=self.url,
            idleTimeout=self.settings.idle_timeout,
            maxLifetime=self.settings.max_lifetime,
            pingInterval=self.ping_interval,
            server=self.server_kind.value,
        )
        if short:
            self._event(
                "short_timers",
                f"Shorter than the managed runtime allows ({LIFECYCLE_MIN} s at least): the "
                f"{' and the '.join(short)}; fine for tests, not what a deployment sees",
                level="WARNING",
            )
        return self

    def stop(self) -> None:
        """Stop serving, end every session, and wait for their processes to be reaped."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            self._end(session, "the emulator stopped")
        for session in sessions:
            session.ready.wait()  # a starting session is stopped once its start gives up
        with self._lock:
            enders = list(self._enders)
        for thread in enders + self._threads:
            thread.join()
        if self._own_log_dir and not any(self.log_dir.iterdir()):
            self.log_dir.rmdir()
        self._event("emulator_stopped", "AgentCore Runtime emulator stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sessions(self) -> list[SessionSummary]:
        with self._lock:
            held = list(self._sessions.values())
            return [
                SessionSummary(
                    s.id,
                    s.state,
                    s.microvm.pid,
                    str(s.microvm.home) if s.microvm.root else None,
                    s.cold_start,
                    s.in_flight,
                    s.view,
                )
                for s in held
            ]

    # -- the data plane

    def invoke(self, operation: Invoke, payload: bytes) -> tuple[Session, Reply]:
        """Hand ``payload`` to the session's agent; ``release`` the session after the
        answer's body is read. Raises ``ServiceError`` as the service would."""
        session_id = operation.session_id or dataplane.new_session_id()
        for _ in range(3):  # the session may end between its lookup and the call
            session = self._session_for(session_id)
            session.ready.wait()
            if session.start_error is not None:
                raise session.start_error
            with self._lock:
                if session.state is SessionState.RUNNING:
                    session.in_flight += 1
                    break
        else:
            raise ServiceError(ErrorType.INTERNAL, f"Session {session_id} kept ending; try again")
        headers = dict(operation.agent_headers)
        headers[SESSION_HEADER] = session.id
        assert session.client is not None  # RUNNING
        try:
            reply = session.client.post("/invocations", payload, headers, INVOKE_READ_TIMEOUT)
        except AgentUnreachable as exc:
            self.release(session)
            raise ServiceError(
                ErrorType.RUNTIME_CLIENT,
                f"The session's agent gave no answer ({exc}); its log: {session.microvm.log_path}",
            ) from None
        if reply.status >= 400:
            text = reply.read_text()
            self.release(session)
            raise dataplane.agent_error(reply.status, text, str(session.microvm.log_path))
        return session, reply

    def release(self, session: Session) -> None:
        with self._lock:
            session.in_flight -= 1
            session.last_activity = time.time()

    def stop_session(self, operation: StopSession) -> None:
        with self._lock:
            session = self._sessions.get(operation.session_id)
        if session is None:
            raise dataplane.no_such_session(operation.session_id)
        session.ready.wait()
        self._end(session, "stopped by StopRuntimeSession")
        session.ended.wait()

    def _session_for(self, session_id: str) -> Session:
        """The session's running or starting session; a new one, started here, if none."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                return session
            if self._stopping.is_set():
                raise ServiceError(ErrorType.INTERNAL, "The emulator is stopping")
            if len(self._sessions) >= self.max_sessions:
                raise dataplane.too_many_sessions(self.max_sessions)
            log_path = self.log_dir / f"{_file_safe(session_id)}-{time.time_ns()}.log"
            microvm = MicroVM(self.target, self.server_kind, self.workdir, log_path)
            session = Session(session_id, microvm, self.settings)
            self._sessions[session_id] = session
        self._start(session)
        return session

    def _start(self, session: Session) -> None:
        microvm = session.microvm
        try:
            microvm.launch()
            # A ping unanswered for an interval is a missed ping, as the managed runtime counts.
            timeout = min(PING_TIMEOUT, max(1.0, self.ping_interval))
            session.probe = AgentProbe(microvm.url, None, timeout, recorded=session.recorded)
            session.client = AgentClient(microvm.url)
            healthy = self._wait_until_healthy(session)
        except (StartFailed, OSError) as exc:
            failure = exc if isinstance(exc, StartFailed) else microvm.failed(str(exc))
            session.start_error = dataplane.start_failed(
                failure.reason, str(failure.log_path), failure.log_tail
            )
            self._event(
                "session_start_failed",
                f"Session {session.id} did not start: {failure.reason}",
                level="ERROR",
                sessionId=session.id,
                log=str(failure.log_path),
            )
            with self._lock:
                self._leave(session, f"its agent did not start: {failure.reason}")
                ender = self._ender(session)
            ender.start()
            session.ready.set()
            return
        session.view = session.lifecycle.observe(healthy)
        with self._lock:
            session.cold_start = time.monotonic() - microvm.launched_at
            session.started_at = healthy.at
            if session.state is SessionState.STARTING:
                session.state = SessionState.RUNNING
                ender = None
            else:  # ended while it started: stopping it was left to this thread
                ender = self._ender(session)
        if ender is not None:
            ender.start()
        session.ready.set()
        self._event(
            "session_started",
            f"Session {session.id} started: pid {microvm.pid}, cold start "
            f"{session.cold_start:.2f} s",
            sessionId=session.id,
            pid=microvm.pid,
            coldStartSeconds=round(session.cold_start, 3),
            home=str(microvm.home),
            log=str(microvm.log_path),
        )

    def _wait_until_healthy(self, session: Session) -> Probe:
        """The first poll that found the agent healthy; ``StartFailed`` if none comes."""
        microvm = session.microvm
        deadline = microvm.launched_at + self.start_timeout
        while True:
            code = microvm.exited()
            if code is not None:
                raise microvm.failed(f"the agent process exited with code {code} before /ping")
            if self._stopping.is_set():
                raise microvm.failed("the emulator is stopping")
            assert session.probe is not None
            probe = session.probe.poll()
            if probe.status is not None:
                return probe
            if time.monotonic() > deadline:
                raise microvm.failed(
                    "Runtime initialization time exceeded. Please make sure that initialization "
                    f"completes in {self.start_timeout:g}s"
                )
            time.sleep(0.02)

    # -- the keeper

    def _keep(self) -> None:
        while not self._stopping.wait(self.ping_interval):
            with self._lock:
                running = [s for s in self._sessions.values() if s.state is SessionState.RUNNING]
            for session in running:
                if self._stopping.is_set():
                    return
                try:
                    self._check(session)
                except Exception:  # a bug here must not end the keeping of the others
                    logger.exception("Checking session %s failed", session.id)

    def _check(self, session: Session) -> None:
        assert session.probe is not None  # RUNNING
        probe = session.probe.poll()
        if probe.status is None:
            code = session.microvm.exited()
            if code is not None:
                self._end(session, f"its agent exited with code {code}")
                return
            session.failed_pings += 1
            if session.failed_pings >= UNHEALTHY_AFTER:
                self._end(
                    session,
                    f"unhealthy: no answer to /ping {session.failed_pings} times ({probe.error})",
                )
            return
        session.failed_pings = 0
        previous = session.view.probe.status if session.view is not None else None
        view = session.lifecycle.observe(probe)
        session.view = view
        if previous is not None and previous != probe.status:
            self._event(
                "status_changed",
                f"Session {session.id}: {previous} -> {probe.status}",
                sessionId=session.id,
                previous=previous,
                status=probe.status,
            )
        for text in view.events:
            if text.startswith("STUCK?"):
                self._event("stuck", text, level="WARNING", sessionId=session.id)
        if view.ended is not None:
            self._end(session, view.ended.reason)

    # -- ending sessions

    def _end(self, session: Session, reason: str) -> None:
        """Start ending ``session`` (once); its process is stopped on a thread of its own.
        A session still starting is stopped by its starting thread when the start is over."""
        with self._lock:
            if session.state in (SessionState.ENDING, SessionState.ENDED):
                return
            starting = session.state is SessionState.STARTING
            self._leave(session, reason)
            if starting:
                return
            ender = self._ender(session)
        ender.start()

    def _leave(self, session: Session, reason: str) -> None:
        """Under the lock: the session is ENDING and out of the map."""
        if session.state in (SessionState.ENDING, SessionState.ENDED):
            return
        session.state = SessionState.ENDING
        session.end_reason = reason
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def _ender(self, session: Session) -> threading.Thread:
        """Under the lock: the thread that stops the session's process, kept for ``stop``."""
        ender = threading.Thread(
            target=self._stop_process, args=(session,), name=f"end-{session.id[:8]}"
        )
        self._enders = [thread for thread in self._enders if thread.is_alive()] + [ender]
        return ender

    def _stop_process(self, session: Session) -> None:
        code = session.microvm.end(self.stop_grace)
        with self._lock:
            session.state = SessionState.ENDED
        lived = time.time() - session.started_at if session.started_at else None
        self._event(
            "session_ended",
            f"Session {session.id} ended: {session.end_reason}",
            sessionId=session.id,
            reason=session.end_reason,
            pid=session.microvm.pid,
            exitCode=code,
            lifetimeSeconds=round(lived, 3) if lived is not None else None,
        )
        session.ended.set()

    def _event(self, event: str, message: str, level: str = "INFO", **fields: Any) -> None:
        record = {
            "timestamp": iso_timestamp(time.time()),
            "level": level,
            "event": event,
            "message": message,
            **fields,
        }
        self.events.append(record)
        if self.on_event is not None:
            try:
                self.on_event(record)
            except Exception:  # a closed stdout must not stop the ending of a session
                logger.exception("on_event failed for %s", event)
        else:
            logger.log(logging.getLevelName(level), message)


def _file_safe(session_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in session_id)[:80]


class _DataPlaneServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them."""

    daemon_threads = True
    emulator: Emulator

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        super().__init__(address, handler)
        self.max_connections = max_connections
        self._connections = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            logger.warning(
                "Refused a connection from %s: %d are open, the most this emulator holds",
                client_address[0],
                self.max_connections,
            )
            error = ServiceError(
                ErrorType.THROTTLING,
                f"Rate exceeded: {self.max_connections} connections are open, the most this "
                "emulator holds",
            )
            status, headers, body = error.answer(dataplane.new_request_id())
            head = f"HTTP/1.1 {status} Too Many Requests\r\nConnection: close\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
            with contextlib.suppress(OSError):
                request.settimeout(1.0)  # a client that reads nothing does not hold this thread
                request.sendall(head.encode("latin-1") + body)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


class _Handler(BaseHTTPRequestHandler):
    """One connection of a client; answers as the service's data plane does."""

    protocol_version = "HTTP/1.1"
    server_version = "agentcore-sync-emulator"
    server: _DataPlaneServer
    #: Seconds a client may stay silent (an idle keep-alive connection) before its
    #: connection, and the thread it holds, is closed.
    timeout = IDLE_CONNECTION_TIMEOUT

    def do_POST(self) -> None:
        request_id = dataplane.new_request_id()
        emulator = self.server.emulator
        body_read = False
        try:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            operation = dataplane.parse(self.command, path, self.headers)
            if isinstance(operation, StopSession):
                self._discard_body()
                body_read = True
                emulator.stop_session(operation)
                self._answer(200, [(SESSION_HEADER, operation.session_id)], b"{}", request_id)
                return
            payload = self.rfile.read(operation.content_length)
            body_read = True
            if len(payload) < operation.content_length:
                self.close_connection = True
                return  # the client left mid-body: nobody to answer
            session, reply = emulator.invoke(operation, payload)
        except ServiceError as error:
            self._refuse(error, request_id, body_read)
            return
        except Exception:  # a bug of the emulator's: this request fails, the emulator serves on
            logger.exception("%s %s failed in the emulator", self.command, self.path[:200])
            failure = ServiceError(ErrorType.INTERNAL, "The emulator failed; see its log")
            self._refuse(failure, request_id, body_read)
            return
        try:
            self._stream(session, reply, request_id)
        finally:
            reply.body.close()
            emulator.release(session)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def _stream(self, session: Session, reply: Reply, request_id: str) -> None:
        """The agent's answer, passed on as it comes (chunked: a stream has no length)."""
        self.send_response(200)
        self.send_header("Content-Type", reply.headers.get("Content-Type", "application/json"))
        self.send_header(SESSION_HEADER, session.id)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in _chunks(reply):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client left, or the session ended mid-stream

    def _refuse(self, error: ServiceError, request_id: str, body_read: bool) -> None:
        status, headers, body = error.answer(request_id)
        if not body_read:
            self._discard_body()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _answer(
        self, status: int, headers: list[tuple[str, str]], body: bytes, request_id: str
    ) -> None:
        self.send_response(status)
        for name, value in [("Content-Type", "application/json"), *headers]:
            self.send_header(name, value)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > STOP_BODY_MAX:
            self.close_connection = True  # not worth reading: the connection ends instead
            return
        self.rfile.read(int(length))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


def _chunks(reply: Reply) -> Iterator[bytes]:
    read1 = getattr(reply.body, "read1", None)
    while True:
        chunk = read1(65536) if read1 is not None else reply.body.read(65536)
        if not chunk:
            return
        yield chunk


def event_line(record: dict[str, Any]) -> str:
    """An event as one JSON log line."""
    return json.dumps(record, default=str)
