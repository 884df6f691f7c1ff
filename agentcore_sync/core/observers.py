"""Observers: what watches invocations and background tasks from outside the core.

Tracing (``observability.tracing``) is one. The core calls each observer at the
start and the end of every invocation and task, in the context the work runs in,
so that what the observer makes current there (a span) is current for the
handler or the task; it knows nothing else of them. With no observer, nothing
is called.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .context import RequestContext

logger = logging.getLogger("agentcore_sync.observers")


class Observer(Protocol):
    def invocation_started(self, context: RequestContext) -> Any:
        """An invocation with valid ids starts, in its own context; returns what
        ``invocation_finished`` gets."""

    def invocation_finished(self, token: Any, status: int) -> None:
        """The invocation's answer is made (its HTTP status); same context as the start."""

    def task_started(self, task_id: int, name: str) -> Any:
        """A background task starts running, in its context (a copy of its starter's)."""

    def task_finished(self, token: Any, status: str, error: str | None) -> None:
        """The task ended with ``status`` (a record status); same context as the start."""


def started(observers: list[Observer], method: str, *args: Any) -> list[Any]:
    """Each observer's token for a start; a failing observer is logged and skipped."""
    tokens = []
    for observer in observers:
        try:
            tokens.append(getattr(observer, method)(*args))
        except Exception:
            logger.exception("An observer failed")
            tokens.append(None)
    return tokens


def finished(observers: list[Observer], method: str, tokens: list[Any], *args: Any) -> None:
    for observer, token in zip(observers, tokens, strict=False):
        try:
            getattr(observer, method)(token, *args)
        except Exception:
            logger.exception("An observer failed")


def run_in(context: contextvars.Context, observers: list[Observer], method: str, *args: Any) -> Any:
    """``started``/``finished`` in ``context`` (a task's, from a pool thread)."""
    return context.run(
        started if method.endswith("started") else finished, observers, method, *args
    )
