"""The set of tasks that keep the agent busy.

Every task, whether registered by hand (``add_async_task``), by ``@async_task``
or by the background executor, is one entry here; the automatic ping status is
``HealthyBusy`` exactly while the set is non-empty. Each start and end is
logged as the official SDK logs it (``tasklog``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import TaskState
from .busy import BusyFlag
from .ids import random_ids
from .tasklog import task_log

logger = logging.getLogger("agentcore_sync.registry")

#: Eight hours: the managed runtime's limit for an asynchronous job.
DEFAULT_MAX_DURATION = 8 * 3600.0
#: Seconds between two looks of the watchdog for overdue tasks.
WATCHDOG_INTERVAL = 1.0

# Bound once: they run twice per task.
_log_started = task_log.started
_log_completed = task_log.completed


@dataclass(slots=True)
class TaskEntry:
    task_id: int
    name: str
    started_at: float
    metadata: dict[str, Any] | None
    max_duration: float | None
    state: TaskState = TaskState.RUNNING
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
        return (
            limit is not None and self.state == TaskState.RUNNING and now - self.started_at > limit
        )


class TaskRegistry:
    """Thread-safe registry of active tasks.

    ``busy`` flips each time the set goes from empty to non-empty or back, so
    that the ping status records the change with the time it happened rather
    than the time of the next ping. While the set is non-empty a watchdog
    thread logs each task that runs past its maximum duration.

    Adding and completing take no lock while the set stays non-empty: with
    threads adding and completing at once, a lock taken on every call makes
    them queue behind each other's GIL hand-offs. Each dict operation is
    atomic; only a possible change of emptiness takes the lock (see
    ``_settle_busy``).
    """

    def __init__(self) -> None:
        # Invariant: an id is in _tasks from the add() that issued it until the
        # first complete() of it, and never again (dict operations are atomic).
        self._tasks: dict[int, TaskEntry] = {}
        # _lock guards busy's flips, and the counts published to a board.
        # Invariant: once every add() and complete() has returned, busy.busy is
        # whether _tasks is non-empty. Lock order: the ping tracker's lock, then
        # this one (it takes busy's flips); this one, then the board's (publish)
        # and the ping log's (busy.on_flip).
        self._lock = threading.Lock()
        self.busy = BusyFlag(self._lock, "task {!r} started", "task {!r} finished", "tasks active")
        self._reseed_ids()
        # A forked child (gunicorn --preload) must not issue its parent's ids:
        # the at-fork hook below reseeds every live registry.
        _live.add(self)
        #: Called with the new size, under the lock, on every change (multi-worker boards).
        self.publish: Callable[[int], None] | None = None
        # _watchdog_lock guards _watchdog. Invariant: while tasks are active, a
        # watchdog thread is running (it exits once the registry is empty).
        self._watchdog_lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def _reseed_ids(self) -> None:
        # Random ids (``core.ids``), taken from this pool: list.pop and list.extend
        # are atomic, so threads share it without a lock (two that find it empty both
        # refill it; no id is lost or repeated). A forked child starts a pool of its
        # own, or it would hand out its parent's next ids.
        self._id_pool: list[int] = []

    def add(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        *,
        state: TaskState = TaskState.RUNNING,
        max_duration: float | None = DEFAULT_MAX_DURATION,
    ) -> int:
        tasks, pool = self._tasks, self._id_pool
        while True:
            try:
                task_id = pool.pop()
            except IndexError:
                pool.extend(random_ids())
                continue
            if task_id not in tasks:  # taken: a chance in 2**53 for each active task
                break
        started_at = time.time()
        entry = TaskEntry(task_id, name, started_at, metadata, max_duration, state)
        if self.publish is None:
            tasks[task_id] = entry
        else:
            with self._lock:
                tasks[task_id] = entry
                self.publish(len(tasks))
        if not self.busy.busy:
            self._settle_busy(started_at, name)
        if self._watchdog is None:
            self._start_watchdog()
        _log_started(name, task_id, started_at)
        return task_id

    def set_state(self, task_id: int, state: TaskState) -> bool:
        entry = self._tasks.get(task_id)
        if entry is None:
            return False
        entry.state = state
        if state == TaskState.RUNNING:
            entry.started_at = time.time()
        return True

    def complete(self, task_id: int) -> TaskEntry | None:
        """Remove the task; ``None`` when it was unknown or already completed."""
        tasks = self._tasks
        if self.publish is None:
            entry = tasks.pop(task_id, None)
        else:
            with self._lock:
                entry = tasks.pop(task_id, None)
                self.publish(len(tasks))
        if entry is None:
            logger.warning("Attempted to complete unknown task ID: %s", task_id)
            return None
        if not tasks and self.busy.busy:
            self._settle_busy(time.time(), entry.name)
        _log_completed(entry.name, task_id, entry.started_at)
        return entry

    def _settle_busy(self, at: float, name: str) -> None:
        """Flip ``busy`` until it agrees with the set, after a change of emptiness.

        Called, with the time of its change, by an add() that found ``busy``
        false, and by a complete() that emptied the set while ``busy`` was
        true. Re-reading the set after each
        flip closes the race with a call that read ``busy`` just before the flip:
        its change of the set came before its read, so it is seen here.
        """
        tasks, busy, lock = self._tasks, self.busy, self._lock
        # acquire/release rather than ``with``: this runs twice per task of
        # microseconds started from idle, and ``with`` costs half as much again.
        lock.acquire()
        try:
            while (now_busy := bool(tasks)) is not busy.busy:
                busy.flip(now_busy, at, name)
                at = time.time()
        finally:
            lock.release()

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def jobs(self) -> list[dict[str, Any]]:
        """Descriptions of the active tasks, oldest first."""
        now = time.time()
        entries = list(self._tasks.values())  # one atomic copy
        return [entry.describe(now) for entry in entries]

    def flag_overdue(self) -> list[TaskEntry]:
        """Mark, and return, running tasks newly past their maximum duration."""
        now = time.time()
        newly: list[TaskEntry] = []
        for entry in list(self._tasks.values()):
            if not entry.overdue and entry.is_past_limit(now):
                entry.overdue = True
                newly.append(entry)
        return newly

    # -- the watchdog -------------------------------------------------------

    def _start_watchdog(self) -> None:
        with self._watchdog_lock:
            if self._watchdog is None and self._tasks:
                self._watchdog = threading.Thread(
                    target=self._watch_overdue, name="agentcore-watchdog", daemon=True
                )
                self._watchdog.start()

    def _watch_overdue(self) -> None:
        """Log each task the moment it runs past its maximum duration."""
        while True:
            time.sleep(WATCHDOG_INTERVAL)
            for entry in self.flag_overdue():
                logger.warning(
                    "Task %r (id %s) is overdue: running for %.0fs, past its maximum of %.0fs",
                    entry.name,
                    entry.task_id,
                    time.time() - entry.started_at,
                    entry.max_duration,
                )
            with self._watchdog_lock:
                if self._tasks:
                    continue
                self._watchdog = None
            # An add() may have read the old watchdog just before it was cleared.
            if self._tasks:
                self._start_watchdog()
            return


# The registries of this process, held weakly: one at-fork hook for all of them,
# rather than one per registry, which would keep every registry alive for good.
_live: weakref.WeakSet[TaskRegistry] = weakref.WeakSet()


def _reseed_live_registries() -> None:
    for registry in list(_live):
        registry._reseed_ids()


os.register_at_fork(after_in_child=_reseed_live_registries)
