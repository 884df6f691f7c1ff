"""``middleware=[...]``: WSGI middleware around the app, in the official SDK's order.

The SDK takes Starlette ``Middleware`` entries and applies the first in the
list outermost. A WSGI server cannot run ASGI middleware, so here the list
holds what wraps a WSGI app, ``mw(wsgi_app) -> wsgi_app`` (werkzeug's
``ProxyFix``, a ``lambda app: MyMiddleware(app, option=1)``), applied in
the same order around ``app.wsgi_app``; anything else is refused when the
app is made, with the WSGI way in the message.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[..., Any]
WSGIMiddleware = Callable[[WSGIApp], WSGIApp]

_WSGI_WAY = (
    "middleware=[...] takes WSGI middleware: callables that wrap a WSGI app, e.g. "
    "middleware=[lambda app: MyWSGIMiddleware(app)], or wrap it after making the app: "
    "app.wsgi_app = MyWSGIMiddleware(app.wsgi_app)"
)


def check_middleware(middleware: Iterable[Any]) -> list[WSGIMiddleware]:
    """The list, each entry checked; TypeError for one that is not WSGI middleware."""
    if isinstance(middleware, (str, bytes)) or not isinstance(middleware, Iterable):
        raise TypeError(f"{_WSGI_WAY}; got {type(middleware).__name__}, not a list")
    checked = list(middleware)
    for entry in checked:
        why = _refusal(entry)
        if why is not None:
            raise TypeError(f"{_WSGI_WAY}; got {why}")
    return checked


def wrap(wsgi_app: WSGIApp, middleware: list[WSGIMiddleware]) -> WSGIApp:
    """``wsgi_app`` wrapped so that the first of ``middleware`` sees requests first."""
    for entry in reversed(middleware):
        wsgi_app = entry(wsgi_app)
        if not callable(wsgi_app):
            raise TypeError(f"{_WSGI_WAY}; {entry!r} returned {type(wsgi_app).__name__}")
    return wsgi_app


def _refusal(entry: Any) -> str | None:
    """Why ``entry`` is not WSGI middleware, or None when it may be."""
    starlette = sys.modules.get("starlette.middleware")  # imported if the entry is one of its
    if starlette is not None and isinstance(entry, starlette.Middleware):
        return (
            f"Starlette's {entry!r}: ASGI middleware, which a WSGI server (gunicorn, "
            "waitress) cannot run"
        )
    if not callable(entry):
        return f"{type(entry).__name__} {entry!r}, which is not callable"
    # A class's own __call__ (its instances'), or an object's bound one.
    call = getattr(entry, "__call__", None)  # noqa: B004
    if inspect.iscoroutinefunction(entry) or inspect.iscoroutinefunction(call):
        return f"{entry!r}: ASGI middleware, which a WSGI server (gunicorn, waitress) cannot run"
    try:
        inspect.signature(entry).bind(None)
    except TypeError:
        return f"{entry!r}, which cannot be called with one argument, the app"
    except ValueError:
        pass  # no signature to read (a builtin): given the benefit of the doubt
    return None
