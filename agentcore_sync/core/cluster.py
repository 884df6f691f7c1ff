"""Task counts shared by the workers of one gunicorn server.

``gunicorn -w N`` runs N processes, each with its own task registry, and the
managed runtime's ``/ping`` reaches whichever worker accepts it. For the
answer to be true, every worker publishes its active-task count, whether it
is saturated, and a heartbeat into one small memory-mapped file (a "board")
named after the master's pid; ``/ping`` sums the board. Task details are
published beside it as one JSON file per worker, for ``get_async_task_info``.

A worker killed with SIGKILL stops heartbeating: once its heartbeat is older
than ``STALE_AFTER`` and its process is gone (or a zombie), its slot no longer
counts, and a new worker may take the slot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from .processes import is_alive

logger = logging.getLogger("agentcore_sync.cluster")

SLOTS = 64
_HEADER = struct.Struct("<8sqqd")  # magic, slot count, busy (0/1), when it last changed
_STATUS = struct.Struct("<qd")  # the last two fields of the header
_STATUS_OFFSET = 16
_SLOT = struct.Struct("<qqqd")  # pid, active tasks, saturated, heartbeat (wall clock)
_ALL_SLOTS = struct.Struct("<" + "qqqd" * SLOTS)
_MAGIC = b"acsbrd02"
_SIZE = _HEADER.size + _SLOT.size * SLOTS

#: How often a worker refreshes its heartbeat and its published task details.
HEARTBEAT_INTERVAL = 1.0
#: A slot whose heartbeat is older than this counts only if its process still lives.
STALE_AFTER = 2.5


def board_directory() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return os.path.join(base, f"agentcore_sync-{os.getuid()}")


class WorkerBoard:
    """This worker's view of, and slot in, the board of its server."""

    def __init__(
        self,
        server_key: str,
        jobs: Callable[[], list[dict[str, Any]]],
        directory: str | None = None,
    ) -> None:
        self.directory = directory or board_directory()
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(self.directory, f"board-{server_key}")
        self._jobs = jobs
        self.pid = os.getpid()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < _SIZE:
                    os.ftruncate(fd, _SIZE)
                self._map = mmap.mmap(fd, _SIZE)
                if self._map[: len(_MAGIC)] != _MAGIC:
                    _HEADER.pack_into(self._map, 0, _MAGIC, SLOTS, 0, time.time())
                self.slot = self._claim_slot()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        self._offset = _HEADER.size + self.slot * _SLOT.size
        # Set once, by close() (under _lock, before it takes _jobs_lock), and never
        # cleared. Writers of the slot and of the jobs file check it under the lock
        # of what they write: once close() has returned, nothing writes them again.
        self._stopped = threading.Event()
        # _lock guards _active, _saturated and the slot: the registry (under its
        # lock), the limiter (under its) and the heartbeat thread all write it.
        # Invariant: until close(), the slot holds this pid with _active and
        # _saturated; after, it is zero for good (a late publish or heartbeat must
        # not bring back a worker that left, nor take a slot another worker got).
        # Lock order: the registry's or the limiter's lock, then this one; it is
        # held for a write of the map only.
        self._lock = threading.Lock()
        self._active = 0
        self._saturated = 0
        self._write_slot()
        self._jobs_path = os.path.join(self.directory, f"jobs-{server_key}-{self.pid}.json")
        # _jobs_lock guards the jobs file. Invariant: it exists only while the
        # board is not stopped (close() removes it after the last write).
        self._jobs_lock = threading.Lock()
        self._dirty = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="agentcore-board", daemon=True)
        self._thread.start()

    def _claim_slot(self) -> int:
        """A free slot, or one whose worker is gone; the board is flocked by the caller."""
        now = time.time()
        for slot in range(SLOTS):
            pid, _active, _saturated, beat = _SLOT.unpack_from(
                self._map, _HEADER.size + slot * _SLOT.size
            )
            if pid == 0 or pid == self.pid:
                return slot
            if now - beat > STALE_AFTER and not is_alive(pid):
                return slot
        raise RuntimeError(f"All {SLOTS} worker slots of {self.path} are taken by live workers")

    def _write_slot(self) -> None:
        with self._lock:
            if not self._stopped.is_set():
                self._pack_slot()

    def _pack_slot(self) -> None:
        """Write this worker's slot. Hold _lock, before close()."""
        _SLOT.pack_into(
            self._map, self._offset, self.pid, self._active, self._saturated, time.time()
        )

    # -- publishing ---------------------------------------------------------

    def publish_count(self, active: int) -> None:
        """Called by the registry, under its lock, whenever its size changes."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._active = active
            self._pack_slot()
        self._dirty.set()

    def publish_saturated(self, saturated: bool) -> None:
        """Called by the limiter, under its lock, whenever it fills up or frees a slot."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._saturated = int(saturated)
            self._pack_slot()

    def _heartbeat(self) -> None:
        while not self._stopped.is_set():
            # Wake early when tasks change, so other workers see details soon.
            changed = self._dirty.wait(HEARTBEAT_INTERVAL)
            self._dirty.clear()
            try:
                self._write_slot()
                if changed or self._active:
                    self._write_jobs()
            except Exception:
                logger.exception("Publishing this worker's tasks failed")
            if changed:
                time.sleep(0.02)  # coalesce bursts of changes into one file write

    def _write_jobs(self) -> None:
        jobs = self._jobs()
        for job in jobs:
            job["worker"] = self.pid
        temporary = f"{self._jobs_path}.tmp"
        with self._jobs_lock:
            if self._stopped.is_set():
                return
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as out:
                json.dump(jobs, out)
            os.replace(temporary, self._jobs_path)

    # -- reading ------------------------------------------------------------

    def _live_slots(self) -> list[tuple[int, int, int]]:
        values = _ALL_SLOTS.unpack_from(self._map, _HEADER.size)
        now = time.time()
        live = []
        for i in range(0, len(values), 4):
            pid = values[i]
            if pid == 0:
                continue
            if pid != self.pid and now - values[i + 3] > STALE_AFTER and not is_alive(pid):
                continue
            live.append((pid, values[i + 1], values[i + 2]))
        return live

    def totals(self) -> tuple[int, bool]:
        """Active tasks of all live workers, and whether any of them is saturated."""
        active = 0
        saturated = False
        for _pid, count, full in self._live_slots():
            active += count
            saturated = saturated or bool(full)
        return active, saturated

    def others_busy(self) -> bool:
        """Whether another live worker has active tasks or is saturated."""
        pid = self.pid
        return any(count or full for other, count, full in self._live_slots() if other != pid)

    def settle_status(self, busy: bool, observed_at: float) -> float:
        """When the server's status last changed, agreeing on it with the other workers.

        The worker that first sees the status differ from the board's records it
        with its time; the others then report that same time, so that
        ``time_of_last_update`` does not depend on which worker answers a ping.
        """
        shared_busy, changed_at = _STATUS.unpack_from(self._map, _STATUS_OFFSET)
        if bool(shared_busy) == busy:
            return changed_at
        _STATUS.pack_into(self._map, _STATUS_OFFSET, int(busy), observed_at)
        return observed_at

    def other_jobs(self) -> list[dict[str, Any]]:
        """Task details published by the other live workers."""
        jobs: list[dict[str, Any]] = []
        prefix = os.path.basename(self.path).replace("board-", "jobs-", 1)
        for pid, count, _full in self._live_slots():
            if pid == self.pid or count == 0:
                continue
            path = os.path.join(self.directory, f"{prefix}-{pid}.json")
            with (
                contextlib.suppress(FileNotFoundError, ValueError),
                open(path, encoding="utf-8") as published,
            ):
                jobs.extend(json.load(published))
        return jobs

    def close(self) -> None:
        """Leave the board: the slot is freed and the details removed.

        Safe while the heartbeat thread, the registry or the limiter write, and
        safe to call again (later calls do nothing). The map stays open: pings
        may still read the other workers' slots.
        """
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            _SLOT.pack_into(self._map, self._offset, 0, 0, 0, 0.0)
        self._dirty.set()  # the heartbeat thread ends at once
        with self._jobs_lock, contextlib.suppress(FileNotFoundError):
            os.unlink(self._jobs_path)
        self._thread.join(2)
