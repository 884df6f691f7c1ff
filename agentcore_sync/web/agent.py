"""``AgentCore``: the runtime with its Flask blueprint, ready to mount or to serve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask

from ..core.runtime import Runtime
from ..observability.logging import configure_logging as install_json_logging
from ..observability.metrics import enable_metrics
from ..servers.serving import serve
from .blueprint import make_blueprint
from .errors import install_json_errors
from .websocket import add_websocket_route, check_handler, note_websocket_server

F = TypeVar("F", bound=Callable[..., Any])


class AgentCore(Runtime):
    """The AgentCore Runtime contract, ready to mount into any Flask app.

    ``existing_app.register_blueprint(agent.blueprint)`` serves ``/ping`` and
    ``/invocations`` there. Takes the options of ``Runtime``, and:

    - ``metrics_path``: serve Prometheus metrics at this path, e.g. ``"/metrics"``
      (off by default; needs ``pip install 'agentcore_sync[metrics]'``).
    - ``configure_logging``: log JSON lines unless logging is configured
      already (True), as the official SDK's app does when it is made; the
      core ``Runtime`` itself never touches logging.
    """

    #: The handler served at ``/ws`` (``@websocket``), or None.
    websocket_handler: Callable[..., Any] | None = None

    def __init__(
        self,
        debug: bool = False,
        *,
        metrics_path: str | None = None,
        configure_logging: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(debug, **options)
        self.configure_logging = configure_logging
        if configure_logging:
            install_json_logging()
        self.blueprint: Blueprint = make_blueprint(self)
        #: The connections open at ``/ws`` now.
        self.websockets = add_websocket_route(self.blueprint, self)
        #: The blueprint serving Prometheus metrics, when ``metrics_path`` is set.
        self.metrics_blueprint: Blueprint | None = (
            enable_metrics(self, metrics_path) if metrics_path is not None else None
        )

    def websocket(self, func: F) -> F:
        """Register the handler served at ``/ws``: called ``handler(websocket, context)``.

        A coroutine function gets a ``WebSocket`` with Starlette's methods to await
        (``accept``, ``receive_text``, ``send_json``...), a plain function a
        ``SyncWebSocket`` with the same methods, blocking. Served by gunicorn with
        the shipped settings (one thread per connection); waitress cannot hold a
        WebSocket, and answers ``/ws`` with a JSON error that says so.
        """
        check_handler(func)
        self.websocket_handler = func
        return func

    def close_websockets(self, code: int = 1012) -> int:
        """Close every open ``/ws`` connection with ``code`` (1012: the server restarts,
        as uvicorn closes them when it stops); returns how many were open. The
        shipped gunicorn worker calls it on SIGTERM."""
        return self.websockets.going_away(code)

    def wsgi_app_for_serving(self) -> Flask:
        """A Flask application that serves this runtime alone."""
        app = Flask(__name__, static_folder=None)
        install_json_errors(app)
        app.register_blueprint(self.blueprint)
        if self.metrics_blueprint is not None:
            app.register_blueprint(self.metrics_blueprint)
        return app

    def run(
        self,
        port: int | None = None,
        host: str | None = None,
        app: Flask | None = None,
        **server_options: Any,
    ) -> None:
        """Serve on waitress (threads) until SIGTERM or Ctrl-C: the agent alone, or
        ``app``, the Flask app it is mounted into, with all of its routes.

        ``port`` defaults to ``$PORT``, else 8080; ``host`` to ``$HOST``, else
        127.0.0.1, or 0.0.0.0 inside a container, as the official SDK does.
        ``server_options`` go to waitress (``threads=16`` by default).
        """
        if app is not None and self.blueprint.name not in app.blueprints:
            raise ValueError(
                f"this agent is not mounted into {app.name!r}: "
                "app.register_blueprint(agent.blueprint) first"
            )
        note_websocket_server(self, "waitress")
        wsgi = self.wsgi_app_for_serving() if app is None else app
        serve(wsgi, [self], port=port, host=host, **server_options)
