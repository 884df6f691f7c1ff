"""A bounded pool of daemon threads for background callables.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the
interpreter exits, so one eight-hour task would hold a stopping server
hostage. Here the runtime decides how long shutdown waits (the grace period)
and records what is left as interrupted; the threads themselves are daemons.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("agentcore_sync.pool")


class ThreadPool:
    """Runs submitted callables on at most ``max_workers`` threads, in order."""

    def __init__(self, max_workers: int, name: str = "agentcore-task") -> None:
        if max_workers < 1:
            raise ValueError(f"task_threads must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._name = name
        # A work item is (function, arguments): a closure per item would make a
        # cell per variable, each one more object for the cyclic collector.
        self._work: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        # _lock guards _threads and _idle. Invariant: _idle counts threads that
        # are blocked on _work.get() and about to take the next item, and
        # len(_threads) <= max_workers.
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0

    def submit(self, work: Callable[..., None], *args: Any) -> None:
        """Run ``work(*args)`` on a pool thread, after the work submitted before it."""
        with self._lock:
            if self._idle == 0 and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._serve,
                    name=f"{self._name}-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.add(thread)
                thread.start()
            else:
                self._idle = max(0, self._idle - 1)
        self._work.put((work, args))

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            work, args = item
            try:
                work(*args)
            except BaseException:
                # Work items record their own outcome; this is the last line of
                # defence that keeps the thread (and the pool) alive.
                logger.exception("A background work item raised")
            # Not kept alive by an idle thread (concurrent.futures does the same).
            del item, work, args
            with self._lock:
                self._idle += 1
