"""``AgentCore``: the runtime with its Flask blueprint, ready to mount or to serve."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from ..core.runtime import Runtime
from ..observability.logging import configure_logging as install_json_logging
from ..observability.metrics import enable_metrics
from ..servers.serving import serve
from .blueprint import make_blueprint
from .errors import install_json_errors


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
        #: The blueprint serving Prometheus metrics, when ``metrics_path`` is set.
        self.metrics_blueprint: Blueprint | None = (
            enable_metrics(self, metrics_path) if metrics_path is not None else None
        )

    def websocket(self, func: Any) -> Any:
        """Not served: WSGI has no WebSocket, so ``/ws`` handlers cannot run here."""
        raise NotImplementedError(
            "@app.websocket is not supported by agentcore_sync: WSGI servers (gunicorn, "
            "waitress) cannot hold WebSocket connections. Serve /ws with the official "
            "bedrock_agentcore SDK, or stream over SSE by returning a generator."
        )

    def wsgi_app_for_serving(self) -> Flask:
        """A Flask application that serves this runtime alone."""
        app = Flask(__name__, static_folder=None)
        install_json_errors(app)
        app.register_blueprint(self.blueprint)
        if self.metrics_blueprint is not None:
            app.register_blueprint(self.metrics_blueprint)
        return app

    def run(self, port: int | None = None, host: str | None = None, **server_options: Any) -> None:
        """Serve on waitress (threads) until SIGTERM or Ctrl-C.

        ``port`` defaults to ``$PORT``, else 8080; ``host`` to ``$HOST``, else
        127.0.0.1, or 0.0.0.0 inside a container, as the official SDK does.
        ``server_options`` go to waitress (``threads=16`` by default).
        """
        serve(self.wsgi_app_for_serving(), [self], port=port, host=host, **server_options)
