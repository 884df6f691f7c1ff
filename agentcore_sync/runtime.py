"""``AgentCore``: the runtime, independent of any one Flask application.

It owns the pieces (task registry, ping tracker, event loop, invocation
limiter, background executor) and the blueprint that serves them;
``BedrockAgentCoreApp`` is the same runtime that is also its own Flask app.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from flask import Blueprint

from .admission import InvocationLimiter
from .blueprint import make_blueprint
from .callables import Kind, kind_of, name_of, takes_context
from .cluster import WorkerBoard
from .executor import BackgroundExecutor, TaskHandle
from .logging import configure_logging as install_json_logging
from .loop import LoopThread
from .models import PingStatus
from .ping import PingTracker
from .registry import DEFAULT_MAX_DURATION, TaskRegistry
from .stores import open_store
from .stores.resilient import ResilientStore
from .tasks import track

logger = logging.getLogger("agentcore_sync")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_BODY_SIZE = 100 * 1024 * 1024
DEFAULT_RESULT_TTL = 24 * 3600.0
DEFAULT_TASK_THREADS = 8
# Under gunicorn's default graceful_timeout of 30 s, with time left to write records.
DEFAULT_SHUTDOWN_GRACE = 25.0


class _ActiveTasks:
    """What ``app._active_tasks`` was in the official SDK, as far as docs use it."""

    __slots__ = ("_runtime",)

    def __init__(self, runtime: AgentCore) -> None:
        self._runtime = runtime

    def __len__(self) -> int:
        return self._runtime._active_count()

    def __bool__(self) -> bool:
        return self._runtime._active_count() > 0


def default_store_url() -> str:
    """``$AGENTCORE_SYNC_RESULT_STORE``, else an SQLite file in the user's cache directory.

    A file, so that results outlive the process; in the user's cache rather than
    the working directory, so that serving an app does not write into its source.
    """
    url = os.environ.get("AGENTCORE_SYNC_RESULT_STORE")
    if url:
        return url
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return "sqlite:///" + os.path.join(os.path.abspath(cache), "agentcore_sync", "results.db")


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit, so that shutdown runs, where nobody handles it.

    Servers with their own handler (gunicorn workers, ``run()``) keep theirs;
    under one that has none (``waitress-serve``), SIGTERM would otherwise end
    the process at once, without waiting for tasks or recording them.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def exit_now(signum: int, frame: Any) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, exit_now)


class AgentCore:
    """The AgentCore Runtime contract, ready to mount into any Flask app.

    ``existing_app.register_blueprint(agent.blueprint)`` serves ``/ping`` and
    ``/invocations`` there. Options:

    - ``max_body_size``: largest accepted request body in bytes (100 MiB).
    - ``max_concurrent_invocations``: invocations served at once before 503;
      derived from the server's threads by ``run()`` and the shipped gunicorn
      config when left unset.
    - ``max_task_duration``: seconds after which a task is flagged overdue and a
      background coroutine cancelled (8 h, the managed runtime's limit).
    - ``result_store``: URL of the store for background task records
      (``sqlite:///path``, ``redis://host:port/db``, ``memory://``); default
      ``$AGENTCORE_SYNC_RESULT_STORE``, else an SQLite file in the user's cache.
    - ``result_ttl``: seconds a task record is kept (24 h).
    - ``task_threads``: threads running background callables (8).
    - ``shutdown_grace``: seconds shutdown waits for background tasks before
      recording them interrupted (``$AGENTCORE_SYNC_SHUTDOWN_GRACE``, 25).
    - ``server_id``: records of dead processes with this id are recovered as
      interrupted (the host name: one machine, one server).
    - ``ping_timeout``: seconds a custom ``@ping`` function may take before
      ``/ping`` answers with the automatic status instead (0.5).
    - ``metrics_path``: serve Prometheus metrics at this path, e.g. ``"/metrics"``
      (off by default; needs ``pip install 'agentcore_sync[metrics]'``).
    - ``configure_logging``: log JSON lines unless logging is configured (True).
    """

    #: Every runtime of this process, for server hooks that receive some other app.
    instances: ClassVar[weakref.WeakSet[AgentCore]] = weakref.WeakSet()

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
        metrics_path: str | None = None,
        configure_logging: bool = True,
    ) -> None:
        if configure_logging:
            install_json_logging()
        self.debug = debug
        self.max_body_size = max_body_size
        self.max_task_duration = max_task_duration
        self.handlers: dict[str, Callable[..., Any]] = {}
        self._handler: Callable[..., Any] | None = None
        self._handler_kind = Kind.FUNCTION
        self._handler_takes_context = False
        self._registry = TaskRegistry()
        self._limiter = InvocationLimiter(max_concurrent_invocations)
        self._ping = PingTracker(
            (self._registry.busy, self._limiter.busy), custom_timeout=ping_timeout
        )
        #: The board shared with the other workers of a gunicorn server, once joined.
        self._board: WorkerBoard | None = None
        #: Called as ``fn(status_code, seconds)`` after each invocation is answered.
        self.invocation_listeners: list[Callable[[int, float], None]] = []
        #: Called as ``fn(record)`` with each background task's final record.
        self.task_listeners: list[Callable[[dict[str, Any]], None]] = []
        self._loop = LoopThread()
        self.result_store_url = result_store or default_store_url()
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
        self._executor = BackgroundExecutor(
            self._registry,
            self._ping,
            self._loop,
            self._result_store,
            owner=server_id or os.environ.get("AGENTCORE_SYNC_SERVER_ID") or socket.gethostname(),
            max_workers=task_threads,
            listeners=self.task_listeners,
        )
        self._shutdown_once = threading.Lock()
        self._shut_down = False
        atexit.register(self.shutdown)
        _exit_on_sigterm()
        self.blueprint: Blueprint = make_blueprint(self)
        #: The blueprint serving Prometheus metrics, when ``metrics_path`` is set.
        self.metrics_blueprint: Blueprint | None = None
        if metrics_path is not None:
            from .metrics import enable_metrics

            self.metrics_blueprint = enable_metrics(self, metrics_path)
        AgentCore.instances.add(self)

    # -- decorators ---------------------------------------------------------

    def entrypoint(self, func: F) -> F:
        """Register the handler: called ``handler(payload)`` or ``handler(payload, context)``."""
        self._handler = func
        self._handler_kind = kind_of(func)
        self._handler_takes_context = takes_context(func)
        self.handlers["main"] = func
        # The official SDK lets ``handler.run()`` serve the app; some callables refuse attributes.
        with contextlib.suppress(AttributeError, TypeError):
            func.run = lambda port=None, host=None: self.run(port, host)  # type: ignore[attr-defined]
        return func

    def ping(self, func: F) -> F:
        """Register a custom status function returning a ``PingStatus`` or its value."""
        self._ping.custom = func
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
                self,
                f,
                name or name_of(f),
                metadata,
                max_duration if max_duration is not None else self.max_task_duration,
            )

        return decorate(func) if func is not None else decorate

    def websocket(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Not served: WSGI has no WebSocket, so ``/ws`` handlers cannot run here."""
        raise NotImplementedError(
            "@app.websocket is not supported by agentcore_sync: WSGI servers (gunicorn, "
            "waitress) cannot hold WebSocket connections. Serve /ws with the official "
            "bedrock_agentcore SDK, or stream over SSE by returning a generator."
        )

    # -- tasks and status ---------------------------------------------------

    def add_async_task(self, name: str, metadata: dict[str, Any] | None = None) -> int:
        """Register a task; the status is ``HealthyBusy`` until it is completed."""
        return self._registry.add(name, metadata, max_duration=self.max_task_duration)

    def complete_async_task(self, task_id: int) -> bool:
        """Complete a task; ``False`` (and a warning) for an unknown or completed id."""
        return self._registry.complete(task_id) is not None

    def get_async_task_info(self) -> dict[str, Any]:
        """Active tasks: ``{"active_count": n, "running_jobs": [{"name", "duration", ...}]}``.

        Under a multi-worker gunicorn server, the tasks of every worker.
        """
        jobs = self._registry.jobs()
        board = self._board
        if board is None:
            return {"active_count": len(jobs), "running_jobs": jobs}
        for job in jobs:
            job["worker"] = board.pid
        active, _saturated = board.totals()
        return {"active_count": active, "running_jobs": jobs + board.other_jobs()}

    def get_current_ping_status(self) -> PingStatus:
        """Forced status first, then the custom ``@ping`` function, then automatic."""
        return self._ping.current()

    def force_ping_status(self, status: PingStatus | str) -> None:
        self._ping.forced = PingStatus(status)
        self._ping.current(cause="forced")

    def clear_forced_ping_status(self) -> None:
        self._ping.forced = None
        self._ping.current(cause="forced status cleared")

    # -- background work ----------------------------------------------------

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskHandle:
        """Run ``func(*args, **kwargs)`` in the background; returns at once.

        The task is registered (status busy) before this returns, and its
        outcome is recorded in the result store (``get_task_result``).
        """
        return self._executor.submit(
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
        return self._executor.get(task_id)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop taking background work, wait up to ``grace`` seconds, record the rest.

        Runs once; called on SIGTERM by ``run()``, by the shipped gunicorn
        config when a worker exits, and at interpreter exit.
        """
        with self._shutdown_once:
            if self._shut_down:
                return
            self._shut_down = True
        self._executor.shutdown(self.shutdown_grace if grace is None else grace)
        store = self._store
        if store is not None:
            store.close()

    def _result_store(self) -> ResilientStore:
        store = self._store
        if store is not None:
            return store
        with self._store_lock:
            if self._store is None:
                self._store = ResilientStore(open_store(self.result_store_url, self.result_ttl))
                recovering = threading.Thread(
                    target=self._executor.recover, name="agentcore-recover", daemon=True
                )
                recovering.start()
            return self._store

    @property
    def _active_tasks(self) -> _ActiveTasks:
        # The official docs test ``app._active_tasks`` for truthiness and len().
        return _ActiveTasks(self)

    def _active_count(self) -> int:
        board = self._board
        return len(self._registry) if board is None else board.totals()[0]

    def join_workers(self, server_key: str) -> None:
        """Share task counts with the other workers of one server (gunicorn ``-w N``).

        The shipped gunicorn config calls this in each worker with the master's
        pid; afterwards ``/ping`` and ``get_async_task_info`` count every worker's tasks.
        """
        if self._board is not None:
            return
        board = WorkerBoard(server_key, jobs=self._registry.jobs)
        board.publish_count(len(self._registry))
        self._registry.publish = board.publish_count
        self._limiter.publish = board.publish_saturated
        self._board = board
        self._ping.board = board
        logger.info("Sharing task counts with the other workers of server %s", server_key)

    # -- serving ------------------------------------------------------------

    def wsgi_app_for_serving(self) -> Any:
        """The WSGI application that serves this runtime."""
        from flask import Flask

        from .app import install_json_errors

        app = Flask(__name__, static_folder=None)
        install_json_errors(app)
        app.register_blueprint(self.blueprint)
        if self.metrics_blueprint is not None:
            app.register_blueprint(self.metrics_blueprint)
        return app

    def run(self, port: int | None = None, host: str | None = None, **server_options: Any) -> None:
        """Serve on waitress (threads) until SIGTERM or Ctrl-C.

        ``port`` defaults to ``$PORT``, else 8080; ``host=None`` is 127.0.0.1, or
        0.0.0.0 inside a container, as the official SDK does. ``server_options``
        go to waitress (``threads=16`` by default).
        """
        from .serving import serve

        if port is None:
            port = int(os.environ.get("PORT", "8080"))
        serve(self, port=port, host=host, **server_options)
