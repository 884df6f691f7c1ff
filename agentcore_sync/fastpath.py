"""A shorter way through Flask for ``/ping`` and ``/invocations``.

Flask's dispatch (routing, hooks, signals, session, response processing)
costs more than the runtime's own work on these two routes. When nothing a
user registered would run on them, the same views are served with less:

- ``/ping`` without a Flask context at all (no user code runs on it, unless a
  custom ``@ping`` function is set, which takes the full path);
- ``/invocations`` inside a real request context (``flask.request``, ``g``,
  ``current_app`` and ``request.endpoint`` work in handlers), skipping only
  what is empty: hooks, signal sends and session handling.

Anything registered — ``before_request``/``after_request``/``teardown``
functions for the app or the runtime's blueprint, URL processors, receivers
of ``request_started``/``request_finished``, another rule on the same path, a
``SERVER_NAME`` — sends requests down Flask's full path, unchanged. WSGI
middleware wraps ``wsgi_app`` and so runs either way.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import request_finished, request_started

from .blueprint import ping_body
from .invocation import invoke

if TYPE_CHECKING:
    from .app import BedrockAgentCoreApp

logger = logging.getLogger("agentcore_sync.fastpath")

_PING_HEADERS = [("Content-Type", "application/json")]
_HOOK_REGISTRIES = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "url_value_preprocessors",
    "url_default_functions",
)


class FastPath:
    """Decides per request whether the short way is allowed, and serves it."""

    def __init__(self, app: BedrockAgentCoreApp) -> None:
        self._app = app
        self._ping_view = app.view_functions[f"{app.blueprint.name}.ping"]
        self._invocations_view = app.view_functions[f"{app.blueprint.name}.invocations"]
        # None until the app's setup is frozen by its first request (as in Flask,
        # hooks cannot be added after that); then whether nothing is registered.
        self._setup_allows: bool | None = None

    def serve(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes] | None:
        """The response, or None when this request must take Flask's full path."""
        path = environ.get("PATH_INFO")
        method = environ.get("REQUEST_METHOD")
        if path == "/ping":
            if method != "GET" or self._app._ping.custom is not None:
                return None
        elif path != "/invocations" or method != "POST":
            return None
        if request_started.receivers or request_finished.receivers:
            return None
        allowed = self._setup_allows
        if allowed is None:
            allowed = self._freeze_setup()
        if not allowed:
            return None
        if path == "/ping":
            body = ping_body(self._app)
            start_response("200 OK", [*_PING_HEADERS, ("Content-Length", str(len(body)))])
            return [body]
        with self._app.request_context(environ):
            # A copy, as in the view: ids set for this request stay with it.
            response = contextvars.copy_context().run(invoke, self._app)
            return response(environ, start_response)

    def _freeze_setup(self) -> bool:
        app = self._app
        # What Flask's own first request does: from now on, setup methods raise.
        app._got_first_request = True
        scopes = (None, app.blueprint.name)
        hooks = any(
            getattr(app, registry).get(scope) for registry in _HOOK_REGISTRIES for scope in scopes
        )
        paths = ("/ping", "/invocations")
        rules = [rule for rule in app.url_map.iter_rules() if rule.rule in paths]
        allowed = (
            not hooks
            and len(rules) == 2
            and app.view_functions.get(f"{app.blueprint.name}.ping") is self._ping_view
            and app.view_functions.get(f"{app.blueprint.name}.invocations")
            is self._invocations_view
            and not app.config.get("SERVER_NAME")
            and not app.url_map.host_matching
        )
        logger.debug("Fast path for /ping and /invocations: %s", "on" if allowed else "off")
        self._setup_allows = allowed
        return allowed
