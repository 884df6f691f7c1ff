"""What kind of callable a handler or task is.

Handlers and tasks may be plain, coroutine, generator or async generator
functions, and also bound methods, ``functools.partial`` objects or objects
with ``__call__``; the kind decides where and how they run.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from typing import Any


class Kind(enum.Enum):
    FUNCTION = "function"
    COROUTINE = "coroutine"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async generator"


def _innermost(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    if not (inspect.isfunction(func) or inspect.ismethod(func)) and not inspect.isclass(func):
        call = type(func).__dict__.get("__call__") or getattr(type(func), "__call__", None)  # noqa: B004
        if inspect.isfunction(call) or inspect.ismethod(call):
            return call
    return func


def kind_of(func: Callable[..., Any]) -> Kind:
    """The kind of ``func``, read through partials and from ``__call__``."""
    target = _innermost(func)
    if inspect.isasyncgenfunction(target):
        return Kind.ASYNC_GENERATOR
    if inspect.iscoroutinefunction(target):
        return Kind.COROUTINE
    if inspect.isgeneratorfunction(target):
        return Kind.GENERATOR
    return Kind.FUNCTION


def takes_context(handler: Callable[..., Any]) -> bool:
    """Whether ``handler``'s second parameter is named ``context``."""
    try:
        params = list(inspect.signature(handler).parameters)
    except (TypeError, ValueError):
        return False
    return len(params) >= 2 and params[1] == "context"


def name_of(func: Callable[..., Any]) -> str:
    target = func
    while isinstance(target, functools.partial):
        target = target.func
    return getattr(target, "__name__", None) or type(target).__name__
