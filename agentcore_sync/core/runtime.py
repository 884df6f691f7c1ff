"""``Runtime``: the AgentCore Runtime contract without a web framework or a server.

It owns the pieces (task registry, ping status, invocation limiter, event
loop, background executor, result store) and offers the public methods of
SPEC §2 on them. Constructing one has no process-wide effect: logging, signal
handlers and interpreter tuning belong to whoever serves it (``run()``, the
gunicorn hooks); at interpreter exit, a runtime that is still alive is shut
down through a weak reference, so that nothing keeps it alive for that.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import inspect
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..models import PingStatus
from ..stores import open_store
from ..stores.resilient import ResilientStore
from .admission import InvocationLimiter
from .callables import Kind, kind_of, name_of, takes_context
from .cluster import WorkerBoard
from .executor import BackgroundExecutor
from .handles import TaskHandle
from .lifespan import Lifespan
from .loop import LoopThread
from .observers import Observer
from .ping import PingTracker
from .registry import DEFAULT_MAX_DURATION, TaskRegistry
from .tasks import track

logger = logging.getLogger("agentcore_sync")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024
DEFAULT_RESULT_TTL = 24 * 3600.0
DEFAULT_TASK_THREADS = 8
# Under gunicorn's default graceful_timeout of 30 s, with time left to write records.
DEFAULT_SHUTDOWN_GRACE = 25.0


@dataclass(frozen=True, slots=True)
class Handler:
    """The registered entrypoint, with what decides how it is called."""

    func: Callable[..., Any]
    kind: Kind
    takes_context: bool


class _ActiveTasks:
    """What ``app._active_tasks`` was in the official SDK, as far as docs use it."""

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __len__(self) -> int:
        return self._runtime.active_count()

    def __bool__(self) -> bool:
        return self._runtime.active_count() > 0


def default_store_url(agent: str) -> str:
    """``$AGENTCORE_SYNC_RESULT_STORE``, else an SQLite file of this agent's own.

    A file, so that results outlive the process; in the user's cache rather than
    the working directory, so that serving an app does not write into its source;
    named after ``agent`` (where the agent is defined), so that two agents on one
    machine keep their records apart and a restarted agent finds its own.
    """
    url = os.environ.get("AGENTCORE_SYNC_RESULT_STORE")
    if url:
        return url
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(agent.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in agent.rsplit("/", 1)[-1])
    return "sqlite:///" + os.path.join(
        os.path.abspath(cache), "agentcore_sync", f"{name[-40:]}-{digest}.db"
    )


def agent_identity(module_globals: dict[str, Any]) -> str:
    """Where an agent is defined: its module's file (or name), stable across restarts."""
    path = module_globals.get("__file__")
    if path:
        return os.path.splitext(os.path.abspath(path))[0]
    return str(module_globals.get("__name__") or "agent")


class Runtime:
    """The AgentCore Runtime contract: tasks, ping status, invocations, background work.

    Options:

    - ``max_body_size``: largest accepted request body in bytes (100 MiB).
    - ``max_concurrent_invocations``: invocations served at once before 503;
      derived from the server's threads by ``run()`` and the shipped gunicorn
      config when left unset.
    - ``max_task_duration``: seconds after which a task is flagged overdue and a
      background coroutine cancelled (8 h, the managed runtime's limit).
    - ``result_store``: URL of the store for background task records
      (``sqlite:///path``, ``redis://host:port/db``, ``memory://``); default
      ``$AGENTCORE_SYNC_RESULT_STORE``, else an SQLite file of this agent's own
      in the user's cache.
    - ``result_ttl``: seconds a task record is kept (24 h).
    - ``task_threads``: threads running background callables (8).
    - ``shutdown_grace``: seconds shutdown waits for background tasks before
      recording them interrupted (``$AGENTCORE_SYNC_SHUTDOWN_GRACE``, 25).
    - ``server_id``: records of dead processes with this id are recovered as
      interrupted (the host name: one machine, one server).
    - ``ping_timeout``: seconds a custom ``@ping`` function may take before
      ``/ping`` answers with the automatic status instead (0.5).
    - ``agent``: what names this agent's default store (where it is defined).
    - ``lifespan``: entered once per process before serving, exited on shutdown
      after background tasks (see ``core.lifespan``): a callable taking the app
      and returning an async or plain context manager, as the official SDK's.
    - ``busy_while_invoking``: report ``HealthyBusy`` while any invocation or
      stream is in flight, not only while tasks run or invocations are
      saturated (``$AGENTCORE_SYNC_BUSY_WHILE_INVOKING=1``; off).
    - ``sse_keepalive``: seconds of silence after which a stream sends an SSE
      comment, so that proxies keep it open (``$AGENTCORE_SYNC_SSE_KEEPALIVE``;
      off, as in the official SDK).
    """

    #: Every runtime of this process, for server hooks that receive some other app.
    instances: ClassVar[weakref.WeakSet[Runtime]] = weakref.WeakSet()

    def __init__(
        self,
        debug: bool = False,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_concurrent_invocations: int | None = None,
        max_task_duration: float | None = DEFAULT_MAX_DURATION,
        result_store: str | None = None,
        result_ttl: float = DEFAULT_RESULT_TTL,
        task_threads: int = DEFAULT_TASK_THREADS,
        shutdown_grace: float | None = None,
        server_id: str | None = None,
        ping_timeout: float = 0.5,
        agent: str | None = None,
        lifespan: Any = None,
        busy_while_invoking: bool | None = None,
        sse_keepalive: float | None = None,
    ) -> None:
        #: The official SDK's debug flag: whether the debug actions are served.
        self.debug = debug
        self.max_body_size = max_body_size
        self.max_task_duration = max_task_duration
        #: The registered handlers by name, as in the official SDK (``"main"``).
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.handler: Handler | None = None
        self.registry = TaskRegistry()
        if busy_while_invoking is None:
            busy_while_invoking = env_flag("AGENTCORE_SYNC_BUSY_WHILE_INVOKING")
        self.busy_while_invoking = busy_while_invoking
        self.limiter = InvocationLimiter(max_concurrent_invocations, busy_while_invoking)
        flags = [self.registry.busy, self.limiter.busy]
        if self.limiter.invoking is not None:
            flags.append(self.limiter.invoking)
        self.ping_status = PingTracker(flags, custom_timeout=ping_timeout)
        #: Seconds of silence before a stream sends a keep-alive comment; None: never.
        self.sse_keepalive = keepalive_seconds(sse_keepalive)
        #: The board shared with the other workers of a gunicorn server, once joined.
        self.board: WorkerBoard | None = None
        #: What serves this runtime, as set up by the server (None until then).
        self.served_by: str | None = None
        #: Called as ``fn(status_code, seconds)`` after each invocation is answered.
        self.invocation_listeners: list[Callable[[int, float], None]] = []
        #: Called as ``fn(record)`` with each background task's final record.
        self.task_listeners: list[Callable[[dict[str, Any]], None]] = []
        #: Called at the start and end of each invocation and task (``core.observers``).
        self.observers: list[Observer] = []
        self.loop = LoopThread()
        #: The app's lifespan (None without one), entered by ``start()``.
        self.lifespan = Lifespan(lifespan, self, self.loop) if lifespan is not None else None
        if agent is None:
            agent = agent_identity(_caller_globals())
        self.result_store_url = result_store or default_store_url(agent)
        self.result_ttl = result_ttl
        self.shutdown_grace = (
            shutdown_grace
            if shutdown_grace is not None
            else float(os.environ.get("AGENTCORE_SYNC_SHUTDOWN_GRACE", DEFAULT_SHUTDOWN_GRACE))
        )
        # _store_lock guards opening the store. Invariant: _store is None until
        # the store is open and crash recovery has been started on it.
        self._store_lock = threading.Lock()
        self._store: ResilientStore | None = None
        self.executor = BackgroundExecutor(
            self.registry,
            self.ping_status,
            self.loop,
            self.result_store,
            owner=server_id or os.environ.get("AGENTCORE_SYNC_SERVER_ID") or socket.gethostname(),
            max_workers=task_threads,
            listeners=self.task_listeners,
            observers=self.observers,
        )
        self._shutdown_once = threading.Lock()
        self._shut_down = False
        Runtime.instances.add(self)
        _shutdown_at_exit()

    # -- decorators ---------------------------------------------------------

    def entrypoint(self, func: F) -> F:
        """Register the handler: called ``handler(payload)`` or ``handler(payload, context)``."""
        self.handler = Handler(func, kind_of(func), takes_context(func))
        self.handlers["main"] = func
        # The official SDK lets ``handler.run()`` serve the app (a Runtime with a
        # server, ``AgentCore``, has ``run``); some callables refuse attributes.
        with contextlib.suppress(AttributeError, TypeError):
            func.run = lambda port=None, host=None: self.run(port, host)  # type: ignore[attr-defined]
        return func

    def ping(self, func: F) -> F:
        """Register a custom status function returning a ``PingStatus`` or its value."""
        self.ping_status.custom = func
        return func

    def async_task(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_duration: float | None = None,
    ) -> Any:
        """Mark work that keeps the agent busy while it runs.

        Works on plain, coroutine, generator and async generator functions,
        bare (``@app.async_task``) or with options (``@app.async_task(name=...)``).
        The result keeps the function's kind and signature and gains
        ``.start(*args, **kwargs)`` to run it in the background.
        """

        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            return track(
                self.registry,
                self.executor,
                f,
                name or name_of(f),
                metadata,
                max_duration if max_duration is not None else self.max_task_duration,
            )

        return decorate(func) if func is not None else decorate

    # -- tasks and status ---------------------------------------------------

    def add_async_task(self, name: str, metadata: dict[str, Any] | None = None) -> int:
        """Register a task; the status is ``HealthyBusy`` until it is completed."""
        return self.registry.add(name, metadata, max_duration=self.max_task_duration)

    def complete_async_task(self, task_id: int) -> bool:
        """Complete a task; ``False`` (and a warning) for an unknown or completed id."""
        return self.registry.complete(task_id) is not None

    def get_async_task_info(self) -> dict[str, Any]:
        """Active tasks: ``{"active_count": n, "running_jobs": [{"name", "duration", ...}]}``.

        Under a multi-worker gunicorn server, the tasks of every worker.
        """
        jobs = self.registry.jobs()
        board = self.board
        if board is None:
            return {"active_count": len(jobs), "running_jobs": jobs}
        for job in jobs:
            job["worker"] = board.pid
        active, _saturated = board.totals()
        return {"active_count": active, "running_jobs": jobs + board.other_jobs()}

    def activity(self) -> dict[str, Any]:
        """What this process is doing, for tools on the same machine (``monitor``,
        ``emulate``) to read without an invocation: the active tasks (as
        ``get_async_task_info``), and this process's invocations: in flight, and
        admitted since it started."""
        limiter = self.limiter
        return {
            **self.get_async_task_info(),
            "pid": os.getpid(),
            "invocations_in_flight": limiter.in_flight,
            "invocations_admitted": limiter.admitted,
        }

    def get_current_ping_status(self) -> PingStatus:
        """Forced status first, then the custom ``@ping`` function, then automatic."""
        return self.ping_status.current()

    def force_ping_status(self, status: PingStatus | str) -> None:
        self.ping_status.force(PingStatus(status))

    def clear_forced_ping_status(self) -> None:
        self.ping_status.force(None)

    def active_count(self) -> int:
        """Tasks keeping the agent busy: this process's, or every worker's once joined."""
        board = self.board
        return len(self.registry) if board is None else board.totals()[0]

    @property
    def _active_tasks(self) -> _ActiveTasks:
        # The official docs test ``app._active_tasks`` for truthiness and len().
        return _ActiveTasks(self)

    # -- background work ----------------------------------------------------

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskHandle:
        """Run ``func(*args, **kwargs)`` in the background; returns at once.

        The task is registered (status busy) before this returns, and its
        outcome is recorded in the result store (``get_task_result``).
        """
        return self.executor.submit(
            func,
            args,
            kwargs,
            name=name_of(func),
            metadata=None,
            max_duration=self.max_task_duration,
        )

    def get_task_result(self, task_id: int | str) -> dict[str, Any] | None:
        """The record of a background task, from this process or the shared store."""
        try:
            task_id = int(task_id)
        except (TypeError, ValueError):
            return None
        return self.executor.get(task_id)

    def result_store(self) -> ResilientStore:
        """The result store, opened on first use (crash recovery starts then)."""
        store = self._store
        if store is not None:
            return store
        with self._store_lock:
            if self._store is None:
                self._store = ResilientStore(open_store(self.result_store_url, self.result_ttl))
                recovering = threading.Thread(
                    target=self.executor.recover, name="agentcore-recover", daemon=True
                )
                recovering.start()
            return self._store

    # -- serving ------------------------------------------------------------

    def start(self) -> None:
        """Enter the lifespan, once per process, before serving; raises
        ``LifespanFailed`` if it raised. Servers call this; a no-op without one."""
        lifespan = self.lifespan
        if lifespan is not None and not lifespan.entered:
            lifespan.enter()

    def join_workers(self, server_key: str) -> None:
        """Share task counts with the other workers of one server (gunicorn ``-w N``).

        The shipped gunicorn config calls this in each worker with the master's
        pid; afterwards ``/ping`` and ``get_async_task_info`` count every worker's tasks.
        """
        if self.board is not None:
            return
        board = WorkerBoard(server_key, jobs=self.registry.jobs)
        board.publish_count(len(self.registry))
        self.registry.publish = board.publish_count
        self.limiter.publish = board.publish_saturated
        self.board = board
        self.ping_status.board = board
        logger.info("Sharing task counts with the other workers of server %s", server_key)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop taking background work, wait up to ``grace`` seconds, record the rest.

        Runs once; called on SIGTERM by ``run()``, by the shipped gunicorn
        config when a worker exits, and at interpreter exit.
        """
        with self._shutdown_once:
            if self._shut_down:
                return
            self._shut_down = True
        self.executor.shutdown(self.shutdown_grace if grace is None else grace)
        if self.lifespan is not None:
            self.lifespan.exit()
        store = self._store
        if store is not None:
            store.close()
        board = self.board
        if board is not None:
            board.close()


def env_flag(name: str) -> bool:
    """An on/off environment variable: 1/true/yes/on or 0/false/no/off (off when unset)."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"${name} must be 1 or 0 (true/false, yes/no, on/off), got {value!r}")


def keepalive_seconds(seconds: float | None) -> float | None:
    """``sse_keepalive``, else ``$AGENTCORE_SYNC_SSE_KEEPALIVE``; None (or 0) is off."""
    name = "sse_keepalive"
    if seconds is None:
        name = "$AGENTCORE_SYNC_SSE_KEEPALIVE"
        text = os.environ.get("AGENTCORE_SYNC_SSE_KEEPALIVE", "").strip()
        try:
            seconds = float(text) if text else None
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if seconds is None or seconds == 0:
        return None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds (or 0: off), got {seconds}")
    return float(seconds)


def _caller_globals() -> dict[str, Any]:
    """The globals of the first frame outside this package: where the agent is defined."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__", "").startswith("agentcore_sync."):
        frame = frame.f_back
    return frame.f_globals if frame is not None else {}


_at_exit_registered = False


def _shutdown_at_exit() -> None:
    """At interpreter exit, shut down the runtimes still alive (held weakly meanwhile)."""
    global _at_exit_registered
    if not _at_exit_registered:
        _at_exit_registered = True
        atexit.register(_shutdown_all)


def _shutdown_all() -> None:
    for runtime in list(Runtime.instances):
        runtime.shutdown()
