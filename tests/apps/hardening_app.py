"""A test agent for the hardening tests (issue 6): hostile input, load, soak, faults, security.

A ``GET /boom`` route of the Flask app itself raises, for the error-page tests.

Served by gunicorn (``hardening_app:app``) and by ``python hardening_app.py``
(``app.run()`` on waitress, ``$PORT``). Configured from the environment:

- ``HARDENING_DEBUG=1``: debug actions on (off by default, as in production).
- ``HARDENING_MAX_BODY``: body limit in bytes (64 KiB, so that tests pass it cheaply).
- ``HARDENING_THREADS``: waitress threads for ``app.run()`` (16, the default of ``run()``).
- ``HARDENING_PING_TIMEOUT``: the runtime's ``ping_timeout`` (unset: the runtime's default).
- ``HARDENING_CUSTOM_PING=1``: register a custom ``@app.ping`` whose behaviour the
  ``set_ping_mode`` action switches (auto, ok, busy, raise, junk, none, recurse, ask,
  exit, hang).
- ``HARDENING_TASK_MAX_DURATION``: ``max_task_duration`` of the runtime (unset: 8 h).

The action is read from the payload key ``ACTION`` (``"hardening_action"``), a key
that generated payloads do not produce: every other payload is echoed back as
``{"echo": payload}``, and a payload's ``"note"`` is logged (attacker text that
reaches a log line).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from agentcore_sync import BedrockAgentCoreApp, PingStatus, RequestContext

ACTION = "hardening_action"

options: dict[str, Any] = {
    "max_body_size": int(os.environ.get("HARDENING_MAX_BODY", str(64 * 1024))),
}
if os.environ.get("HARDENING_PING_TIMEOUT"):
    options["ping_timeout"] = float(os.environ["HARDENING_PING_TIMEOUT"])
if os.environ.get("HARDENING_TASK_MAX_DURATION"):
    options["max_task_duration"] = float(os.environ["HARDENING_TASK_MAX_DURATION"])

app = BedrockAgentCoreApp(debug=os.environ.get("HARDENING_DEBUG") == "1", **options)

log = logging.getLogger("hardening_app")

# -- task bookkeeping, for "every task has exactly one terminal record" ----------


class IdSet:
    """A set of task ids in one bit each, so that the soak's bookkeeping does not weigh on
    the memory it measures (the runtime issues ids one after the other)."""

    MARGIN = 1 << 20

    def __init__(self) -> None:
        self._base: int | None = None
        self._bits = bytearray()
        self._others: set[int] = set()
        self.count = 0

    def _slot(self, task_id: int) -> int | None:
        if self._base is None:
            self._base = task_id - self.MARGIN
        slot = task_id - self._base
        return slot if 0 <= slot < 64 * self.MARGIN else None

    def add(self, task_id: int) -> bool:
        """Add ``task_id``; False when it was already there."""
        slot = self._slot(task_id)
        if slot is None:
            if task_id in self._others:
                return False
            self._others.add(task_id)
        else:
            byte, bit = divmod(slot, 8)
            if byte >= len(self._bits):
                self._bits.extend(bytes(byte + 4096 - len(self._bits)))
            if self._bits[byte] >> bit & 1:
                return False
            self._bits[byte] |= 1 << bit
        self.count += 1
        return True

    def __contains__(self, task_id: object) -> bool:
        if not isinstance(task_id, int):
            return False
        slot = self._slot(task_id)
        if slot is None:
            return task_id in self._others
        byte, bit = divmod(slot, 8)
        return byte < len(self._bits) and bool(self._bits[byte] >> bit & 1)


_audit_lock = threading.Lock()
#: Task ids whose final record reached a task listener, and those that reached it twice.
_finished = IdSet()
_duplicates: list[int] = []
_final_statuses: dict[str, int] = {}
#: Handles kept for a later "cancel" action, by task id.
_held: dict[int, Any] = {}


def _on_task_finished(record: dict[str, Any]) -> None:
    task_id = record["task_id"]
    with _audit_lock:
        if not _finished.add(task_id):
            _duplicates.append(task_id)
        status = record["status"]
        _final_statuses[status] = _final_statuses.get(status, 0) + 1


app.runtime.task_listeners.append(_on_task_finished)


# -- background work ---------------------------------------------------------------


@app.async_task
def job(seconds: float = 0.0, fail: bool = False, value: Any = None) -> dict[str, Any]:
    if seconds:
        time.sleep(seconds)
    if fail:
        raise RuntimeError(f"job failed on purpose ({value})")
    return {"value": value}


@app.async_task
async def coro_job(seconds: float = 0.0, fail: bool = False, value: Any = None) -> dict[str, Any]:
    await asyncio.sleep(seconds)
    if fail:
        raise RuntimeError(f"coroutine job failed on purpose ({value})")
    return {"value": value}


@app.async_task(max_duration=0.05)
async def overdue_job(seconds: float = 1.0) -> str:
    """Sleeps past its 50 ms maximum duration: the runtime cancels it at the limit."""
    await asyncio.sleep(seconds)
    return "not cancelled"


@app.async_task
def exiting_job(how: str) -> None:
    if how == "system_exit":
        raise SystemExit("background SystemExit")
    raise KeyboardInterrupt("background KeyboardInterrupt")


@app.async_task
def stream_task(count: int, interval: float):
    for i in range(count):
        if i and interval:
            time.sleep(interval)
        yield {"i": i}


@app.async_task
async def astream_task(count: int, interval: float):
    for i in range(count):
        if i and interval:
            await asyncio.sleep(interval)
        yield {"i": i}


def plain_stream(count: int, interval: float):
    for i in range(count):
        if i and interval:
            time.sleep(interval)
        yield {"i": i}


def exiting_stream(how: str, after: int):
    for i in range(after):
        yield {"i": i}
    if how == "system_exit":
        raise SystemExit("stream SystemExit")
    raise KeyboardInterrupt("stream KeyboardInterrupt")


def broken_stream():
    yield {"i": 0}
    raise RuntimeError("stream broke")


async def exiting_coroutine(how: str) -> None:
    await asyncio.sleep(0)
    if how == "system_exit":
        raise SystemExit("coroutine SystemExit")
    raise KeyboardInterrupt("coroutine KeyboardInterrupt")


def start(payload: dict[str, Any]) -> dict[str, Any]:
    """Start one background task of ``kind``; some are cancelled at once or held."""
    kind = payload.get("kind", "thread")
    seconds = float(payload.get("seconds", 0.0))
    fail = bool(payload.get("fail", False))
    value = payload.get("value")
    if kind == "thread":
        handle = job.start(seconds, fail, value)
    elif kind == "coro":
        handle = coro_job.start(seconds, fail, value)
    elif kind == "overdue":
        handle = overdue_job.start(seconds or 1.0)
    elif kind == "exit":
        handle = exiting_job.start(payload.get("how", "system_exit"))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    cancelled = None
    if payload.get("cancel"):
        cancelled = handle.cancel()
    elif payload.get("hold"):
        with _audit_lock:
            _held[handle.task_id] = handle
    return {"task_id": handle.task_id, "cancelled": cancelled}


def cancel(task_id: int) -> dict[str, Any]:
    with _audit_lock:
        handle = _held.pop(task_id, None)
    return {"cancelled": handle.cancel() if handle is not None else None}


def audit(task_ids: list[int] | None) -> dict[str, Any]:
    """Final records: how many tasks finished once, twice, or not (yet) at all."""
    with _audit_lock:
        summary: dict[str, Any] = {
            "finished": _finished.count,
            "duplicates": list(_duplicates[:20]),
            "duplicate_count": len(_duplicates),
            "statuses": dict(_final_statuses),
            "held": len(_held),
        }
        if task_ids is not None:
            summary["missing"] = [t for t in task_ids if t not in _finished][:20]
    return summary


def records(task_ids: list[int]) -> dict[str, Any]:
    """Status counts of the records of ``task_ids``, and ids whose record is not terminal."""
    counts: dict[str, int] = {}
    unfinished = []
    for task_id in task_ids:
        record = app.get_task_result(task_id)
        status = record["status"] if record else "missing"
        counts[status] = counts.get(status, 0) + 1
        if status not in ("succeeded", "failed", "cancelled", "interrupted"):
            unfinished.append(task_id)
    return {"counts": counts, "unfinished": unfinished[:20]}


# -- process figures ---------------------------------------------------------------


def proc_status() -> dict[str, Any]:
    """This process's pid, thread count and resident memory, from /proc."""
    figures: dict[str, Any] = {"pid": os.getpid()}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key == "Threads":
                figures["threads"] = int(value)
            elif key == "VmRSS":
                figures["rss_kib"] = int(value.split()[0])
    figures["thread_names"] = sorted(t.name for t in threading.enumerate())
    return figures


# -- custom ping ---------------------------------------------------------------------

_ping_mode = {"mode": "auto"}
_hang_release = threading.Event()


def _recurse() -> Any:
    return _recurse()


if os.environ.get("HARDENING_CUSTOM_PING") == "1":

    @app.ping
    def custom_ping() -> Any:
        mode = _ping_mode["mode"]
        if mode == "auto":
            # The automatic rule, computed by the custom function itself.
            busy = app.get_async_task_info()["active_count"] > 0
            return PingStatus.HEALTHY_BUSY if busy else PingStatus.HEALTHY
        if mode == "ok":
            return PingStatus.HEALTHY
        if mode == "busy":
            return "HealthyBusy"
        if mode == "raise":
            raise RuntimeError("custom ping failed on purpose")
        if mode == "junk":
            return {"status": "Nonsense"}
        if mode == "none":
            return None
        if mode == "recurse":
            return _recurse()
        if mode == "ask":
            return app.get_current_ping_status()
        if mode == "hang":
            _hang_release.wait(30)
            return PingStatus.HEALTHY_BUSY
        if mode == "exit":
            raise SystemExit("custom ping SystemExit")
        return "junk"


def set_ping_mode(mode: str) -> dict[str, Any]:
    previous = _ping_mode["mode"]
    if previous == "hang":
        _hang_release.set()
    if mode == "hang":
        _hang_release.clear()
    _ping_mode["mode"] = mode
    return {"mode": mode, "previous": previous}


# -- a route of the Flask app itself ------------------------------------------------------


@app.route("/boom", methods=["GET"])
def boom() -> Any:
    """A Flask view (not the runtime's) that fails with internals in its message."""
    raise RuntimeError("internal detail: password=hunter2 at /srv/secret/config.py")


# -- the handler -----------------------------------------------------------------------


@app.entrypoint
def handler(payload: Any, context: RequestContext) -> Any:
    if not isinstance(payload, dict) or ACTION not in payload:
        if isinstance(payload, dict) and "note" in payload:
            log.info("note: %s", payload["note"])
        return {"echo": payload}
    action = payload[ACTION]
    count = int(payload.get("count", 3))
    interval = float(payload.get("interval", 0.0))
    if action == "info":
        return {**app.get_async_task_info(), "in_flight": app.runtime.limiter.in_flight}
    if action == "proc":
        return proc_status()
    if action == "raise":
        raise ValueError(payload.get("message", "boom"))
    if action == "log":
        log.warning("logged: %s", payload.get("message"))
        return {"request_id": context.request_id, "session_id": context.session_id}
    if action == "context":
        return {"request_id": context.request_id, "session_id": context.session_id}
    if action == "sleep":
        time.sleep(float(payload.get("seconds", 1.0)))
        return {"slept": payload.get("seconds", 1.0)}
    if action == "system_exit":
        raise SystemExit(payload.get("code", 3))
    if action == "keyboard_interrupt":
        raise KeyboardInterrupt("handler KeyboardInterrupt")
    if action == "coroutine_exit":
        return app.runtime.loop.run(exiting_coroutine(payload.get("how", "system_exit")))
    if action == "os_exit":
        os._exit(int(payload.get("code", 7)))
    if action == "stream":
        return plain_stream(count, interval)
    if action == "stream_task":
        return stream_task(count, interval)
    if action == "astream_task":
        return astream_task(count, interval)
    if action == "stream_error":
        return broken_stream()
    if action == "stream_exit":
        return exiting_stream(payload.get("how", "system_exit"), int(payload.get("after", 1)))
    if action == "start":
        return start(payload)
    if action == "cancel":
        return cancel(int(payload["task_id"]))
    if action == "result":
        return {"record": app.get_task_result(payload["task_id"])}
    if action == "records":
        return records(payload["task_ids"])
    if action == "audit":
        return audit(payload.get("task_ids"))
    if action == "set_ping_mode":
        return set_ping_mode(payload["mode"])
    if action == "ping_status":
        return {"status": app.get_current_ping_status().value}
    raise ValueError(f"unknown action {action!r}")


if __name__ == "__main__":
    app.run(
        host=os.environ.get("HARDENING_HOST", "127.0.0.1"),
        threads=int(os.environ.get("HARDENING_THREADS", "16")),
    )
