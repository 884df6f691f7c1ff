"""``BedrockAgentCoreApp``: a Flask application that holds an agent runtime.

The app and the runtime are two objects: Flask's names (``debug``, ``config``,
``run``'s meaning of its options) stay Flask's, and the runtime's stay its
own. The app offers the runtime's public methods (SPEC §2) by handing each to
``app.runtime``; Flask's debug mode, in any form, never opens the runtime's
debug actions.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Blueprint, Flask

from ..core.handles import TaskHandle
from ..core.lifespan import LifespanFailed
from ..core.runtime import agent_identity
from ..core.serialization import encode
from ..models import PingStatus
from ..servers.serving import serve
from .agent import AgentCore
from .errors import install_json_errors
from .fastpath import FastPath
from .middleware import check_middleware, wrap
from .responses import JSONReply
from .websocket import note_websocket_server

F = TypeVar("F", bound=Callable[..., Any])


class BedrockAgentCoreApp(Flask):
    """A Flask app serving ``/ping`` and ``/invocations`` — ``gunicorn module:app`` ready.

    Everything a Flask user registers (``before_request``, error handlers, more
    routes, WSGI middleware on ``wsgi_app``) applies as usual; every error the
    app answers is JSON. ``debug`` is the official SDK's flag (the debug
    actions); ``lifespan`` is the SDK's, given this app (see ``Runtime``);
    ``middleware`` is WSGI middleware, the first in the list outermost as in
    the SDK (see ``web.middleware``); other options are those of ``AgentCore``.
    """

    def __init__(
        self,
        debug: bool = False,
        lifespan: Any = None,
        middleware: Iterable[Callable[[Any], Any]] | None = None,
        import_name: str | None = None,
        **options: Any,
    ) -> None:
        wrappers = check_middleware(middleware) if middleware is not None else []
        caller = inspect.currentframe()
        caller_globals = caller.f_back.f_globals if caller and caller.f_back else {}
        if import_name is None:
            import_name = caller_globals.get("__name__", "agentcore_sync")
        Flask.__init__(self, import_name, static_folder=None)
        options.setdefault("agent", agent_identity(caller_globals))
        #: The agent runtime this app serves.
        self.runtime = AgentCore(debug, lifespan=lifespan, **options)
        if self.runtime.lifespan is not None:
            self.runtime.lifespan.app = self
        install_json_errors(self)
        self.register_blueprint(self.runtime.blueprint)
        if self.runtime.metrics_blueprint is not None:
            self.register_blueprint(self.runtime.metrics_blueprint)
        #: The shorter way through Flask for the two routes; None where it is gated off.
        self.fast_path = FastPath.for_app(self, self.runtime)
        if wrappers:
            # An attribute of the instance: servers then call the app through it for
            # every request (``inline_ping`` steps aside), and the fast path runs inside.
            self.wsgi_app = wrap(self.wsgi_app, wrappers)  # type: ignore[method-assign]

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        lifespan = self.runtime.lifespan
        if lifespan is not None and not lifespan.entered:
            # A server that did not enter it (``waitress-serve``, a test client).
            try:
                self.runtime.start()
            except LifespanFailed as exc:
                body = encode({"error": "Lifespan failed", "details": str(exc)})
                return JSONReply(body, 500)(environ, start_response)
        fast_path = self.fast_path
        if fast_path is not None:
            fast = fast_path.serve(environ, start_response)
            if fast is not None:
                return fast
        return Flask.wsgi_app(self, environ, start_response)

    def inline_ping(self) -> Callable[[], bytes | None] | None:
        """What a server calls for the body of a plain ``GET /ping`` it may answer
        without calling the app (see ``servers.inline_ping``); None when this app's
        class changes how requests are dispatched, or the fast path is off. Its
        answer is None, for the app to answer, while WSGI middleware wraps the app
        or the lifespan is not entered."""
        fast_path = self.fast_path
        if (
            fast_path is None
            or type(self).wsgi_app is not BedrockAgentCoreApp.wsgi_app
            or type(self).__call__ is not Flask.__call__
        ):
            return None

        lifespan = self.runtime.lifespan

        def ping_body() -> bytes | None:
            if "wsgi_app" in vars(self):  # WSGI middleware, given or set later
                return None
            if lifespan is not None and not lifespan.entered:
                return None
            return fast_path.server_ping_body()

        return ping_body

    # -- the runtime's public API (SPEC §2) ----------------------------------

    @property
    def blueprint(self) -> Blueprint:
        return self.runtime.blueprint

    @property
    def handlers(self) -> dict[str, Callable[..., Any]]:
        return self.runtime.handlers

    @property
    def _active_tasks(self) -> Any:
        # The official docs test ``app._active_tasks`` for truthiness and len().
        return self.runtime._active_tasks

    def entrypoint(self, func: F) -> F:
        """Register the handler: called ``handler(payload)`` or ``handler(payload, context)``."""
        self.runtime.entrypoint(func)
        # Some callables refuse attributes.
        with contextlib.suppress(AttributeError, TypeError):
            func.run = lambda port=None, host=None: self.run(port, host)  # type: ignore[attr-defined]
        return func

    def ping(self, func: F) -> F:
        """Register a custom status function returning a ``PingStatus`` or its value."""
        return self.runtime.ping(func)

    def async_task(self, func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Mark work that keeps the agent busy while it runs (see ``AgentCore.async_task``)."""
        return self.runtime.async_task(func, **options)

    def websocket(self, func: F) -> F:
        """Register the handler served at ``/ws``: called ``handler(websocket, context)``
        (see ``AgentCore.websocket``)."""
        return self.runtime.websocket(func)

    def add_async_task(self, name: str, metadata: dict[str, Any] | None = None) -> int:
        """Register a task; the status is ``HealthyBusy`` until it is completed."""
        return self.runtime.add_async_task(name, metadata)

    def complete_async_task(self, task_id: int) -> bool:
        """Complete a task; ``False`` (and a warning) for an unknown or completed id."""
        return self.runtime.complete_async_task(task_id)

    def get_async_task_info(self) -> dict[str, Any]:
        """Active tasks: ``{"active_count": n, "running_jobs": [...]}``."""
        return self.runtime.get_async_task_info()

    def get_current_ping_status(self) -> PingStatus:
        """Forced status first, then the custom ``@ping`` function, then automatic."""
        return self.runtime.get_current_ping_status()

    def force_ping_status(self, status: PingStatus | str) -> None:
        self.runtime.force_ping_status(status)

    def clear_forced_ping_status(self) -> None:
        self.runtime.clear_forced_ping_status()

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskHandle:
        """Run ``func(*args, **kwargs)`` in the background; returns at once."""
        return self.runtime.submit(func, *args, **kwargs)

    def get_task_result(self, task_id: int | str) -> dict[str, Any] | None:
        """The record of a background task, from this process or the shared store."""
        return self.runtime.get_task_result(task_id)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop taking background work, wait up to ``grace`` seconds, record the rest."""
        self.runtime.shutdown(grace)

    def run(  # type: ignore[override]
        self, port: int | None = None, host: str | None = None, **server_options: Any
    ) -> None:
        """Serve this app on waitress (threads) until SIGTERM or Ctrl-C.

        ``port`` defaults to ``$PORT``, else 8080; ``host`` to ``$HOST``, else
        127.0.0.1, or 0.0.0.0 inside a container, as the official SDK does.
        ``server_options`` go to waitress (``threads=16`` by default).
        """
        note_websocket_server(self.runtime, "waitress")
        serve(self, [self.runtime], port=port, host=host, **server_options)


#: The same class under the name the project's docs use.
AgentCoreApp = BedrockAgentCoreApp
