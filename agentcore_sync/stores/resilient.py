"""ResilientStore: a store wrapper that never raises, never blocks, and never loses a
record silently.

Every put goes into a pending map (newest record per task) and returns; a writer
thread writes pending records to the inner store in batches (one transaction or
round trip each), and a burst of puts once it pauses, so a task or a request never
waits on the store's I/O, nor shares the CPU with it during a burst, and the event
loop thread, which records coroutine tasks, is never blocked by it. While the
inner store fails, records stay pending, in memory and bounded, and the writer
retries every ``retry_interval``. One error line marks the start of an outage, one
info line its end.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from typing import Any

from agentcore_sync.stores import (
    InvalidRecordError,
    ResultStore,
    decode_record,
    encode_record,
    is_unfinished,
    redact_text,
)

logger = logging.getLogger("agentcore_sync.stores")

DEFAULT_MAX_PENDING = 100_000
#: Records per transaction or round trip: the writer holds the inner store (and builds
#: its batch) for a bounded time, whatever the backlog.
WRITE_BATCH = 500
#: Pending records past which puts come in a burst (thousands of task starts, each put
#: queued, then running) rather than one at a time: about what the writer writes in a
#: millisecond.
BURST_PENDING = 100
#: In a burst, the writer waits until puts pause for this many seconds, then writes each
#: task's newest record once, rather than competing with the burst for the GIL and the
#: CPU, which the threads answering /ping need meanwhile...
WRITE_DELAY = 0.05
#: ...but records wait no longer than this, under puts that never pause.
MAX_WRITE_DELAY = 0.5
#: At most one log line per this many seconds for failed reads and for dropped records.
LOG_INTERVAL = 30.0


class ResilientStore(ResultStore):
    """Wraps ``inner`` so that put/get/unfinished never raise and put never blocks.

    Records wait in memory (newest per task_id, at most ``max_pending``, oldest dropped
    first with an error log) until the writer thread has written them; while the store
    fails it retries every ``retry_interval`` seconds.
    """

    def __init__(
        self,
        inner: ResultStore,
        retry_interval: float = 1.0,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self._retry_interval = retry_interval
        self._max_pending = max_pending
        # Guards everything below up to _write_lock. Invariants: _pending maps task_id to
        # the newest record of that task not yet written to inner, least recently put
        # first; _last_put is the monotonic time of the latest put; once anything was
        # put, _writer is running until close(), and every put sets _wake after adding
        # to _pending, so nothing pending is left unnoticed. _outage_since is set from
        # the first failed write until a write empties _pending, so an outage logs one
        # error line and one recovery line.
        self._pending_lock = threading.Lock()
        self._pending: dict[int, dict[str, Any]] = {}
        self._last_put = float("-inf")
        self._writer: threading.Thread | None = None
        self._closed = False
        self._last_failure: float | None = None  # monotonic time of the last failed write
        self._outage_since: float | None = None
        self._written_in_outage = 0
        self._dropped_in_outage = 0
        self._dropped_unlogged = 0
        self._drop_logged_at = float("-inf")
        # Held by the one thread writing pending records to inner. Invariant: a task's
        # records reach inner in the order they were put; no writer can land an older
        # version after a newer one. Lock order: this one, then _pending_lock (and the
        # inner store's own); never the other way round.
        self._write_lock = threading.Lock()
        # Guards _read_logged_at and _read_errors_unlogged: read failures are logged at
        # most once per LOG_INTERVAL, with the count of those not logged since.
        self._read_log_lock = threading.Lock()
        self._read_logged_at = float("-inf")
        self._read_errors_unlogged = 0
        self._stop = threading.Event()  # set by close(): the writer ends its wait
        self._wake = threading.Event()  # set by put(): there is something to write

    # -- the ResultStore interface ------------------------------------------------------

    def put(self, record: dict[str, Any]) -> None:
        """Queue the record (a copy) for the writer thread; returns at once."""
        task_id = record.get("task_id") if isinstance(record, dict) else None
        if not isinstance(task_id, int) or isinstance(task_id, bool):
            logger.error("result store %s: ignored a record without an int task_id", self.url)
            return
        dropped = 0
        with self._pending_lock:
            closed = self._closed
            if not closed:
                self._pending.pop(task_id, None)
                self._pending[task_id] = dict(record)  # a copy: the caller may reuse its dict
            while len(self._pending) > self._max_pending:
                del self._pending[next(iter(self._pending))]
                self._dropped_unlogged += 1
                self._dropped_in_outage += 1
            now = self._last_put = time.monotonic()
            if self._dropped_unlogged and now - self._drop_logged_at >= LOG_INTERVAL:
                dropped, self._dropped_unlogged = self._dropped_unlogged, 0
                self._drop_logged_at = now
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._writer_loop, name="agentcore_sync-store-writer", daemon=True
                )
                self._writer.start()
        if closed:
            logger.error(
                "result store %s is closed: record of task %d not stored", self.url, task_id
            )
            return
        if dropped:
            logger.error(
                "result store %s: %d unwritten record(s) dropped from memory, oldest first, "
                "to keep at most %d pending",
                self.url,
                dropped,
                self._max_pending,
            )
        if not self._wake.is_set():  # cheaper than set() when the writer is already due
            self._wake.set()

    def get(self, task_id: int) -> dict[str, Any] | None:
        """The pending record if there is one (it is newer), else the stored one; None when
        the store fails."""
        with self._pending_lock:
            record = self._pending.get(task_id)
        if record is not None:
            return _json_copy(record)
        try:
            return self.inner.get(task_id)
        except Exception as exc:
            self._log_read_error("get", exc)
            return None

    def unfinished(self, owner: str) -> list[dict[str, Any]]:
        """The store's unfinished records of ``owner``, overridden by pending ones, by
        task_id; only the pending ones when the store fails."""
        with self._pending_lock:
            pending = list(self._pending.values())
        try:
            stored = self.inner.unfinished(owner)
        except Exception as exc:
            self._log_read_error("unfinished", exc)
            stored = []
        merged = {record["task_id"]: record for record in stored}
        for record in pending:
            if is_unfinished(record, owner):
                merged[record["task_id"]] = _json_copy(record)
            else:
                merged.pop(record["task_id"], None)
        return [merged[task_id] for task_id in sorted(merged)]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the retry thread, try a last write of pending records (within about
        ``timeout`` seconds plus one store call), log what is lost, close the inner store."""
        deadline = time.monotonic() + timeout
        with self._pending_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._writer
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        if self._write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            try:
                self._write_pending(deadline)
            finally:
                self._write_lock.release()
        with self._pending_lock:
            lost = len(self._pending)
            dropped = self._dropped_unlogged
        if lost or dropped:
            logger.error(
                "result store %s closed with %d record(s) never written, now lost "
                "(and %d dropped earlier without a log line)",
                self.url,
                lost,
                dropped,
            )
        try:
            self.inner.close()
        except Exception as exc:
            logger.error("result store %s failed to close: %s", self.url, redact_text(repr(exc)))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record put so far is written; False if time ran out."""
        deadline = time.monotonic() + timeout
        while self.pending_count():
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def pending_count(self) -> int:
        """How many records wait to be written (for tests and diagnostics)."""
        with self._pending_lock:
            return len(self._pending)

    # -- writing -------------------------------------------------------------------------

    def _write_pending(self, deadline: float) -> None:
        """Write pending records until none are left, the store fails or the monotonic
        ``deadline`` passed. Hold _write_lock."""
        while (batch := self._take_batch()) and self._write_batch(batch):
            if time.monotonic() > deadline:
                return

    def _take_batch(self) -> list[dict[str, Any]]:
        """The WRITE_BATCH least recently put pending records."""
        with self._pending_lock:
            return list(itertools.islice(self._pending.values(), WRITE_BATCH))

    def _write_batch(self, batch: list[dict[str, Any]]) -> bool:
        """Write ``batch``, records taken from _pending, and take off _pending those not
        replaced since; False if the store failed. Hold _write_lock."""
        try:
            try:
                self.inner.put_many(batch)
            except InvalidRecordError:
                # One bad record must not hold back the others: write them one by one.
                for index, record in enumerate(batch):
                    try:
                        self.inner.put(record)
                    except InvalidRecordError as exc:
                        batch[index] = self._make_storable(record, exc)
                        self.inner.put(batch[index])
        except Exception as exc:
            self._note_failure(exc)
            return False
        with self._pending_lock:
            for record in batch:
                task_id = record["task_id"]
                if self._pending.get(task_id) is record:  # not replaced by a newer put
                    del self._pending[task_id]
            self._last_failure = None
            if self._outage_since is not None:
                self._written_in_outage += len(batch)
        self._note_recovery_if_done()
        return True

    def _make_storable(self, record: dict[str, Any], exc: InvalidRecordError) -> dict[str, Any]:
        """Replace a pending record that JSON cannot encode by one with str() values."""
        logger.error("result store %s: %s; storing str() of those values instead", self.url, exc)
        storable = {str(key): _json_safe(value) for key, value in record.items()}
        task_id = record["task_id"]
        with self._pending_lock:
            if self._pending.get(task_id) is record:
                self._pending[task_id] = storable
        return storable

    def _note_failure(self, exc: Exception) -> None:
        """Remember a failed write; log the first of an outage; make sure retries run."""
        with self._pending_lock:
            now = time.monotonic()
            self._last_failure = now
            first = self._outage_since is None
            if first:
                self._outage_since = now
                self._written_in_outage = self._dropped_in_outage = 0
            pending = len(self._pending)
        if first:
            logger.error(
                "result store %s is failing (%s); keeping %d record(s) in memory and "
                "retrying every %gs",
                self.url,
                redact_text(f"{type(exc).__name__}: {exc}"),
                pending,
                self._retry_interval,
            )
        else:
            logger.debug("result store %s still failing: %r", self.url, exc)

    def _note_recovery_if_done(self) -> None:
        """Log the end of an outage once nothing is pending any more."""
        with self._pending_lock:
            if self._outage_since is None or self._pending:
                return
            duration = time.monotonic() - self._outage_since
            written, dropped = self._written_in_outage, self._dropped_in_outage
            unlogged, self._dropped_unlogged = self._dropped_unlogged, 0
            self._outage_since = None
        logger.info(
            "result store %s is answering again after %.1fs; wrote %d record(s) kept in memory%s",
            self.url,
            duration,
            written,
            f", {dropped} were dropped" if dropped else "",
        )
        if unlogged:
            logger.error(
                "result store %s: %d unwritten record(s) were dropped from memory since "
                "the last report",
                self.url,
                unlogged,
            )

    def _writer_loop(self) -> None:
        """Write what put() queues, a batch at a time, bursts once they pause; after a
        failure, wait retry_interval and try again."""
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            deadline = time.monotonic() + MAX_WRITE_DELAY
            while True:
                if not self._wait_out_burst(deadline):
                    return  # close() writes what is pending
                with self._write_lock:
                    batch = self._take_batch()
                    if not batch or not self._write_batch(batch):
                        break
            with self._pending_lock:
                failing = self._last_failure is not None and bool(self._pending)
            if failing and not self._stop.wait(self._retry_interval):
                self._wake.set()

    def _wait_out_burst(self, deadline: float) -> bool:
        """While more than BURST_PENDING records are pending, wait until puts pause for
        WRITE_DELAY, or until the monotonic ``deadline``; False if close() began."""
        while not self._stop.is_set():
            with self._pending_lock:
                if len(self._pending) <= BURST_PENDING:
                    return True
                due = min(self._last_put + WRITE_DELAY, deadline)
            wait = due - time.monotonic()
            if wait <= 0:
                return True
            self._stop.wait(wait)
        return False

    def _log_read_error(self, operation: str, exc: Exception) -> None:
        """Log a failed read, at most once per LOG_INTERVAL."""
        with self._read_log_lock:
            now = time.monotonic()
            if now - self._read_logged_at < LOG_INTERVAL:
                self._read_errors_unlogged += 1
                return
            self._read_logged_at = now
            unlogged, self._read_errors_unlogged = self._read_errors_unlogged, 0
        logger.error(
            "result store %s: %s failed (%s)%s",
            self.url,
            operation,
            redact_text(f"{type(exc).__name__}: {exc}"),
            f"; {unlogged} more read(s) failed since the last report" if unlogged else "",
        )


def _json_copy(record: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy as a store would return it (JSON types), even if JSON cannot encode it."""
    try:
        return decode_record(encode_record(record)[1])
    except InvalidRecordError:
        return {str(key): _json_safe(value) for key, value in record.items()}


def _json_safe(value: Any) -> Any:
    """``value`` in JSON types, with str() for whatever JSON cannot encode."""
    try:
        return json.loads(json.dumps(value, default=str, skipkeys=True))
    except ValueError:  # a circular reference
        return str(value)
