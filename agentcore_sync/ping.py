"""Deciding what ``/ping`` answers, and remembering when that answer changed.

Priority: a forced status, then the custom ``@ping`` function, then the
automatic status (``HealthyBusy`` while tasks are active or invocations are
saturated). A custom function that fails, returns junk, or asks for the
status itself falls back to automatic, so ``/ping`` always has an answer.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .models import PingStatus
from .pool import ThreadPool

logger = logging.getLogger("agentcore_sync.ping")

#: Returns the automatic status and the reason for it.
Automatic = Callable[[], tuple[PingStatus, str]]


class PingTracker:
    """Computes the ping status and keeps ``time_of_last_update`` truthful."""

    def __init__(self, automatic: Automatic, custom_timeout: float = 0.5) -> None:
        self._automatic = automatic
        self.forced: PingStatus | None = None
        self.custom: Callable[[], PingStatus | str] | None = None
        #: Seconds a custom function may take before the automatic status is used.
        self.custom_timeout = custom_timeout
        # The custom function runs on its own thread, so that one that hangs
        # costs a ping custom_timeout at most; while it still hangs, pings use
        # the automatic status at once rather than queue behind it.
        self._custom_thread = ThreadPool(1, name="agentcore-ping")
        self._hung: concurrent.futures.Future[Any] | None = None
        # _lock guards _status and _changed_at. Invariant: _changed_at is the
        # wall-clock time at which the status last became _status.
        self._lock = threading.Lock()
        self._status = PingStatus.HEALTHY
        self._changed_at = time.time()
        # Set while this thread runs the custom function: a custom function that
        # asks for the status gets the automatic one instead of recursing.
        self._local = threading.local()
        self._warned_recursion = False

    @property
    def changed_at(self) -> float:
        return self._changed_at

    def current(self, cause: str | None = None) -> PingStatus:
        """The status now; a change from the last one is recorded and logged."""
        status, reason = self._decide()
        if status is not self._status:
            self._record(status, cause or reason)
        return status

    def snapshot(self) -> tuple[PingStatus, float]:
        """The status and the time it last changed, as ``/ping`` reports them."""
        status = self.current()
        return status, self._changed_at

    def _decide(self) -> tuple[PingStatus, str]:
        forced = self.forced
        if forced is not None:
            return forced, "forced"
        custom = self.custom
        if custom is None:
            return self._automatic()
        if getattr(self._local, "in_custom", False):
            if not self._warned_recursion:
                self._warned_recursion = True
                logger.warning(
                    "Custom ping function called get_current_ping_status(); "
                    "it gets the automatic status instead of recursing"
                )
            return self._automatic()
        return self._call_custom(custom)

    def _call_custom(self, custom: Callable[[], PingStatus | str]) -> tuple[PingStatus, str]:
        hung = self._hung
        if hung is not None and not hung.done():
            return self._automatic()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            self._local.in_custom = True
            try:
                future.set_result(custom())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                self._local.in_custom = False

        self._custom_thread.submit(run)
        try:
            return PingStatus(future.result(self.custom_timeout)), "custom ping function"
        except concurrent.futures.TimeoutError:
            self._hung = future
            logger.warning(
                "Custom ping function did not answer within %gs; using the automatic status "
                "until it returns",
                self.custom_timeout,
            )
        except BaseException as exc:
            logger.warning(
                "Custom ping function failed, using the automatic status: %s: %s",
                type(exc).__name__,
                exc,
            )
        return self._automatic()

    def _record(self, status: PingStatus, cause: str) -> None:
        with self._lock:
            if status is self._status:
                return
            previous = self._status
            self._status = status
            self._changed_at = time.time()
        logger.info("Ping status changed: %s -> %s (%s)", previous.value, status.value, cause)
