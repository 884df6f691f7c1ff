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

logger = logging.getLogger("agentcore_sync.pool")


class ThreadPool:
    """Runs submitted callables on at most ``max_workers`` threads, in order."""

    def __init__(self, max_workers: int, name: str = "agentcore-task") -> None:
        if max_workers < 1:
            raise ValueError(f"task_threads must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._name = name
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        # _lock guards _threads and _idle. Invariant: _idle counts threads that
        # are blocked on _work.get() and about to take the next item, and
        # len(_threads) <= max_workers.
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0

    def submit(self, work: Callable[[], None]) -> None:
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
        self._work.put(work)

    def _serve(self) -> None:
        while True:
            work = self._work.get()
            if work is None:
                return
            try:
                work()
            except BaseException:
                # Work items record their own outcome; this is the last line of
                # defence that keeps the thread (and the pool) alive.
                logger.exception("A background work item raised")
            with self._lock:
                self._idle += 1
