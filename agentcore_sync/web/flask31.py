"""Flask 3.1's request context, built without matching the URL (the fast path's).

This copies what ``RequestContext.__init__`` does in Flask 3.1 and so is
imported only where ``core.versions.FLASK_FAST_PATH`` is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.ctx import RequestContext
from werkzeug.routing import Rule

if TYPE_CHECKING:
    from flask.sessions import SessionMixin
    from flask.wrappers import Request


class InvocationContext(RequestContext):
    """Flask's request context with its URL rule already known.

    Binding a URL adapter to the request and matching it is the largest part
    of building a request context. Here ``request.url_rule`` and
    ``view_args`` are set as matching would set them, and the adapter is
    built only when something asks for it (``url_for``). Takes the arguments
    of ``RequestContext``, so that ``copy()`` works as in Flask.
    """

    def __init__(
        self,
        app: Flask,
        environ: dict[str, Any],
        request: Request | None = None,
        session: SessionMixin | None = None,
        rule: Rule | None = None,
    ) -> None:
        if request is None:
            request = app.request_class(environ)
            request.json_module = app.json
            request.url_rule = rule
            request.view_args = {}
        # RequestContext.__init__, less the adapter.
        self.app = app
        self.request = request
        self.flashes = None
        self._session = session
        self._after_request_functions = []
        self._cv_tokens = []

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set: the adapter, on first use.
        if name != "url_adapter":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        adapter = self.url_adapter = self.app.create_url_adapter(self.request)
        return adapter

    def push(self) -> None:
        # Flask's push matches the URL when the context has an adapter; the
        # rule being known, the adapter is hidden for the push.
        self.url_adapter = None
        try:
            super().push()
        finally:
            del self.url_adapter
