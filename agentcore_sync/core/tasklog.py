"""The official SDK's task lifecycle lines: ``Async task started`` and ``completed``.

The SDK logs both at INFO for every task. Written on the task's own thread,
two records would cost far more than the task bookkeeping itself (a file
handler takes tens of microseconds a record) and a log that blocks (a full
pipe) would block the task. So the registry only notes each start and end,
in bounded memory, and a daemon thread writes the records shortly after,
each with the time and the context (request and session ids) of its event.
A flood of tasks is logged a batch of lines at a time, with one line that
counts the lines not written.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import threading
import time
from collections import deque
from typing import Any

logger = logging.getLogger("agentcore_sync.tasks")

#: Seconds the thread waits after being woken, gathering notes into one write.
COALESCE = 0.01
#: Notes kept between two writes; past that, only counted.
MAX_NOTES = 100
#: Seconds between two writes while notes are being counted rather than kept:
#: a flood of tasks costs its threads a batch of lines this often, no more.
FLOOD_INTERVAL = 0.25

_STARTED = "Async task started: %s (ID: %s)"
_COMPLETED = "Async task completed: %s (ID: %s, Duration: %.2fs)"

#: One event: message, its arguments, wall-clock time, the noting thread's context.
Note = tuple[str, tuple[Any, ...], float, contextvars.Context]


class TaskLog:
    """Notes task starts and ends on the tasks' threads; logs them on its own."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._after_fork)

    def _reset(self) -> None:
        # Notes are appended without a lock (deque.append is atomic) and taken
        # by the thread alone. _lock guards _scheduled and _thread. Invariants:
        # while _notes is non-empty, _scheduled is True and _thread will take
        # them; _room is False from the note that filled _notes to MAX_NOTES
        # until the next take, and meanwhile notes are only counted: _dropped
        # grows (only producers write it; racing increments may be lost, so it
        # is a lower bound), _reported is the part of it logged (the thread's
        # alone). The flood path is one attribute test and one increment.
        self._notes: deque[Note] = deque()
        self._room = True
        self._dropped = 0
        self._reported = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._scheduled = False
        self._writing = False
        self._thread: threading.Thread | None = None

    def started(self, name: str, task_id: int, at: float) -> None:
        if not self._room:
            self._dropped += 1
        elif logger.isEnabledFor(logging.INFO):
            self._keep(_STARTED, (name, task_id), at)

    def completed(self, name: str, task_id: int, started_at: float) -> None:
        if not self._room:
            self._dropped += 1
        elif logger.isEnabledFor(logging.INFO):
            at = time.time()
            self._keep(_COMPLETED, (name, task_id, at - started_at), at)

    def _keep(self, message: str, args: tuple[Any, ...], at: float) -> None:
        notes = self._notes
        notes.append((message, args, at, contextvars.copy_context()))
        if len(notes) >= MAX_NOTES:
            self._room = False
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            self._scheduled = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agentcore-task-log", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        flooded = False
        while True:
            with self._lock:
                while not self._scheduled:
                    self._wake.wait()
            time.sleep(FLOOD_INTERVAL if flooded else COALESCE)
            with self._lock:
                # Cleared before the take: a note made after the take schedules again.
                self._scheduled = False
                self._writing = True
            try:
                flooded = self._write()
            except Exception:
                logger.exception("Logging task starts and ends failed")
            finally:
                with self._lock:
                    self._writing = False

    def _write(self) -> bool:
        """Log the notes taken; whether some were only counted."""
        notes = self._notes
        taken = [notes.popleft() for _ in range(len(notes))]
        self._room = True
        dropped_so_far = self._dropped
        dropped = dropped_so_far - self._reported
        self._reported = dropped_so_far
        for message, args, at, context in taken:
            _log(logging.INFO, message, args, at, context)
        if dropped:
            _log(
                logging.INFO,
                "Async tasks started and completed faster than logged one by one: "
                "%d more start and completion lines not written",
                (dropped,),
                time.time(),
                contextvars.Context(),
            )
        return dropped > 0

    def flush(self, timeout: float = 2.0) -> None:
        """Wait until every note is logged (at exit, and for tests)."""
        if self._dropped != self._reported:
            self._schedule()  # counted after the last take: no note schedules it
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._scheduled and not self._writing:
                    return
            time.sleep(0.001)

    def _after_fork(self) -> None:
        # The thread did not survive the fork; the parent's notes are this
        # process's to log now.
        notes, dropped = list(self._notes), self._dropped - self._reported
        self._reset()
        self._notes.extend(notes)
        self._room = len(notes) < MAX_NOTES
        self._dropped = dropped
        if notes or dropped:
            self._schedule()


def _log(
    level: int, message: str, args: tuple[Any, ...], at: float, context: contextvars.Context
) -> None:
    record = logger.makeRecord(logger.name, level, __file__, 0, message, args, None)
    record.created = at
    record.msecs = (at - int(at)) * 1000
    context.run(logger.handle, record)


task_log = TaskLog()
atexit.register(task_log.flush)
