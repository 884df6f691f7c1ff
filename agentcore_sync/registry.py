"""The set of tasks that keep the agent busy.

Every task, whether registered by hand (``add_async_task``), by ``@async_task``
or by the background executor, is one entry here; the automatic ping status is
``HealthyBusy`` exactly while the set is non-empty.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("agentcore_sync.registry")

#: Eight hours: the managed runtime's limit for an asynchronous job.
DEFAULT_MAX_DURATION = 8 * 3600.0


@dataclass(slots=True)
class TaskEntry:
    task_id: int
    name: str
    started_at: float
    metadata: dict[str, Any] | None
    max_duration: float | None
    state: str = "running"
    overdue: bool = False

    def describe(self, now: float) -> dict[str, Any]:
        job: dict[str, Any] = {
            "name": self.name,
            "duration": now - self.started_at,
            "task_id": self.task_id,
            "state": self.state,
        }
        if self.metadata:
            job["metadata"] = self.metadata
        if self.overdue or self.is_past_limit(now):
            job["overdue"] = True
        return job

    def is_past_limit(self, now: float) -> bool:
        limit = self.max_duration
        return limit is not None and self.state == "running" and now - self.started_at > limit


class TaskRegistry:
    """Thread-safe registry of active tasks.

    ``on_busy_change(busy, cause)`` is called, outside the lock, each time the
    set goes from empty to non-empty or back, so that the ping status can
    record the change the moment it happens rather than at the next ping.
    """

    def __init__(self, on_busy_change: Callable[[str], None] | None = None) -> None:
        # _lock guards _tasks. Invariant: an id is in _tasks from the add() that
        # issued it until the first complete() of it, and never again.
        self._lock = threading.Lock()
        self._tasks: dict[int, TaskEntry] = {}
        self._reseed_ids()
        # A forked child (gunicorn --preload) must not issue its parent's ids.
        os.register_at_fork(after_in_child=self._reseed_ids)
        self._on_busy_change = on_busy_change
        #: Called with the new size, under the lock, on every change (multi-worker boards).
        self.publish: Callable[[int], None] | None = None

    def _reseed_ids(self) -> None:
        # Ids start at a random point so that ids of different processes (gunicorn
        # workers, restarts sharing one result store) do not meet; they stay below
        # 2**53 so that JavaScript clients read them exactly. itertools.count is
        # atomic under the GIL, so issuing an id needs no lock.
        self._ids = itertools.count(secrets.randbits(52) + 1)

    def add(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        *,
        state: str = "running",
        max_duration: float | None = DEFAULT_MAX_DURATION,
    ) -> int:
        task_id = next(self._ids)
        entry = TaskEntry(task_id, name, time.time(), metadata, max_duration, state)
        with self._lock:
            self._tasks[task_id] = entry
            became_busy = len(self._tasks) == 1
            if self.publish is not None:
                self.publish(len(self._tasks))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Task started: %s (id %s)", name, task_id)
        if became_busy and self._on_busy_change is not None:
            self._on_busy_change(f"task {name!r} started")
        return task_id

    def set_state(self, task_id: int, state: str) -> bool:
        with self._lock:
            entry = self._tasks.get(task_id)
            if entry is None:
                return False
            entry.state = state
            if state == "running":
                entry.started_at = time.time()
        return True

    def complete(self, task_id: int) -> TaskEntry | None:
        """Remove the task; ``None`` when it was unknown or already completed."""
        with self._lock:
            entry = self._tasks.pop(task_id, None)
            became_idle = entry is not None and not self._tasks
            if entry is not None and self.publish is not None:
                self.publish(len(self._tasks))
        if entry is None:
            logger.warning(
                "Attempted to complete unknown or already completed task ID: %s", task_id
            )
            return None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Task completed: %s (id %s, %.3fs)",
                entry.name,
                task_id,
                time.time() - entry.started_at,
            )
        if became_idle and self._on_busy_change is not None:
            self._on_busy_change(f"task {entry.name!r} finished")
        return entry

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def jobs(self) -> list[dict[str, Any]]:
        """Descriptions of the active tasks, oldest first."""
        now = time.time()
        with self._lock:
            entries = list(self._tasks.values())
        return [entry.describe(now) for entry in entries]

    def flag_overdue(self) -> list[TaskEntry]:
        """Mark, and return, running tasks newly past their maximum duration."""
        now = time.time()
        newly: list[TaskEntry] = []
        with self._lock:
            for entry in self._tasks.values():
                if not entry.overdue and entry.is_past_limit(now):
                    entry.overdue = True
                    newly.append(entry)
        return newly
