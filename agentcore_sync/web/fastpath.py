"""A shorter way through Flask for ``/ping`` and ``/invocations`` (Flask 3.1 only).

Flask's dispatch (routing, hooks, signals, session, response processing)
costs more than the runtime's own work on these two routes. When nothing a
user registered would run on them, the same views are served with less:

- ``/ping`` without a Flask context at all (no user code runs on it, unless a
  custom ``@ping`` function is set, which takes the full path);
- ``/invocations`` inside a real request context (``flask.request``, ``g``,
  ``session``, ``current_app``, ``request.endpoint`` and ``url_for`` work in
  handlers), skipping only what is empty: URL matching (the rule is known),
  hooks, signal sends, and response processing unless the handler left
  something for it (``after_this_request``, a session to save).

Anything registered — ``before_request``/``after_request``/``teardown``
functions for the app or the runtime's blueprint, URL processors, receivers
of ``request_started``/``request_finished``, another rule on the same path, a
``SERVER_NAME`` or ``TRUSTED_HOSTS``, an override of Flask's dispatch methods
— sends requests down Flask's full path, unchanged. WSGI middleware wraps
``wsgi_app`` and so runs either way.

Building the request context without matching the URL means building Flask's
``RequestContext`` by hand, which only works for the Flask versions it was
written and tested for (``core.versions.FLASK_FAST_PATH``); on every other
version the app takes Flask's full path for every request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, request_finished, request_started
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from ..core.versions import FLASK_FAST_PATH, gate, log_once
from ..servers.serving import note_unprepared_server
from .blueprint import ping_body, serve_invocation
from .responses import Answer, as_response

if TYPE_CHECKING:
    from .agent import AgentCore
    from .flask31 import InvocationContext

logger = logging.getLogger("agentcore_sync.fastpath")

_PING_HEADERS = [("Content-Type", "application/json")]
_HOOK_REGISTRIES = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "url_value_preprocessors",
    "url_default_functions",
)
# The methods of Flask's dispatch that the fast path stands in for: a
# subclass that overrides one expects it to run on every request.
_DISPATCH_METHODS = (
    "request_context",
    "create_url_adapter",
    "preprocess_request",
    "dispatch_request",
    "full_dispatch_request",
    "make_response",
    "process_response",
    "finalize_request",
)
# Set by Flask's test client inside ``with client:``, to keep the context.
_PRESERVE_CONTEXT = "werkzeug.debug.preserve_context"


class FastPath:
    """Decides per request whether the short way is allowed, and serves it."""

    @classmethod
    def for_app(cls, app: Flask, runtime: AgentCore) -> FastPath | None:
        """The fast path of ``app``; None on a Flask version it is not tested on."""
        decided = gate(*FLASK_FAST_PATH)
        log_once(decided)
        if not decided.on:
            return None
        from .flask31 import InvocationContext

        return cls(app, runtime, InvocationContext)

    def __init__(self, app: Flask, runtime: AgentCore, context: type[InvocationContext]) -> None:
        self._app = app
        self._blueprint = runtime.blueprint.name
        self._context = context
        self._runtime = runtime
        self._ping_view = app.view_functions[f"{self._blueprint}.ping"]
        self._invocations_view = app.view_functions[f"{self._blueprint}.invocations"]
        # None until the app's setup is frozen by its first request (as in Flask,
        # hooks cannot be added after that); then whether nothing is registered.
        self._setup_allows: bool | None = None
        self._invocations_rule: Rule | None = None

    def serve(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes] | None:
        """The response, or None when this request must take Flask's full path."""
        path = environ.get("PATH_INFO")
        method = environ.get("REQUEST_METHOD")
        if path == "/ping":
            if method != "GET" or self._runtime.ping_status.custom is not None:
                return None
        elif path != "/invocations" or method != "POST":
            return None
        # What Flask's URL matching would refuse (a WebSocket upgrade on an HTTP
        # rule), and the test client's ``with client:``.
        if not self._allowed() or "HTTP_UPGRADE" in environ or _PRESERVE_CONTEXT in environ:
            return None
        if path == "/ping":
            if self._runtime.served_by is None:
                note_unprepared_server(self._runtime, environ)
            body = ping_body(self._runtime)
            start_response("200 OK", [*_PING_HEADERS, ("Content-Length", str(len(body)))])
            return [body]
        with self._context(self._app, environ, rule=self._invocations_rule) as ctx:
            return self._dispatch(ctx)(environ, start_response)

    def server_ping_body(self) -> bytes | None:
        """The body of a plain ``GET /ping`` that a server may write without calling
        the app (see ``inline_ping``), or None when the app must answer it."""
        if self._runtime.ping_status.custom is not None or not self._allowed():
            return None
        return ping_body(self._runtime)

    def _allowed(self) -> bool:
        """Whether nothing registered on the app would run on these two routes."""
        if request_started.receivers or request_finished.receivers:
            return False
        allowed = self._setup_allows
        if allowed is None:
            allowed = self._freeze_setup()
        config = self._app.config
        # An untrusted host or SERVER_NAME changes what Flask's URL matching
        # does; read per request, as Flask reads them.
        return allowed and not config["SERVER_NAME"] and config.get("TRUSTED_HOSTS") is None

    def _dispatch(self, ctx: InvocationContext) -> Answer:
        """Flask's ``full_dispatch_request`` for the invocations view, less what is empty."""
        app = self._app
        answer = serve_invocation(self._runtime, ctx.request)
        if ctx._after_request_functions or not app.session_interface.is_null_session(ctx._session):
            # The handler left work for after the view: Flask's own finalizing.
            return app.finalize_request(as_response(answer))
        return answer

    def _freeze_setup(self) -> bool:
        app = self._app
        # What Flask's own first request does: from now on, setup methods raise.
        app._got_first_request = True
        scopes = (None, self._blueprint)
        hooks = any(
            getattr(app, registry).get(scope) for registry in _HOOK_REGISTRIES for scope in scopes
        )
        paths = ("/ping", "/invocations")
        rules = [rule for rule in app.url_map.iter_rules() if rule.rule in paths]
        self._invocations_rule = _matched_rule(app, "/invocations", "POST")
        allowed = (
            not hooks
            and len(rules) == 2
            and app.view_functions.get(f"{self._blueprint}.ping") is self._ping_view
            and app.view_functions.get(f"{self._blueprint}.invocations") is self._invocations_view
            and self._invocations_rule is not None
            and self._invocations_rule.endpoint == f"{self._blueprint}.invocations"
            and not app.url_map.host_matching
            and not app.subdomain_matching
            and all(getattr(type(app), name) is getattr(Flask, name) for name in _DISPATCH_METHODS)
        )
        logger.debug("Fast path for /ping and /invocations: %s", "on" if allowed else "off")
        self._setup_allows = allowed
        return allowed


def _matched_rule(app: Flask, path: str, method: str) -> Rule | None:
    """The rule Flask's matching gives ``path``, or None when it gives none.

    Without host or subdomain matching the answer depends on nothing else of
    the request, so one match stands for every request on ``path``.
    """
    adapter = app.url_map.bind("localhost", subdomain=app.url_map.default_subdomain or "")
    try:
        rule, args = adapter.match(path, method, return_rule=True)
    except HTTPException:
        return None
    return rule if not args else None
