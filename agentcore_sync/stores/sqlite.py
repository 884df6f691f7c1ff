"""``sqlite:///relative/path`` and ``sqlite:////absolute/path``: the embedded default.

One file, shared safely by the threads and processes of a machine (WAL journal, busy
timeout), private to its owner (directory 0o700 when created, files 0o600), kept
across restarts.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
import weakref
from typing import Any

from agentcore_sync.stores import (
    DEFAULT_TTL,
    UNFINISHED_STATUSES,
    ResultStore,
    decode_record,
    encode_record,
    is_unfinished,
)

_PREFIX = "sqlite:///"
_UNFINISHED_SQL = ", ".join(f"'{status}'" for status in sorted(UNFINISHED_STATUSES))
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS task_records (
        task_id INTEGER PRIMARY KEY,
        owner TEXT,
        status TEXT,
        expires_at REAL NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS task_records_expiry ON task_records (expires_at)",
    # Partial index: unfinished(owner) touches only the few live records of one owner.
    f"""CREATE INDEX IF NOT EXISTS task_records_unfinished ON task_records (owner)
        WHERE status IN ({_UNFINISHED_SQL})""",
)


class SQLiteStore(ResultStore):
    """Records in one SQLite file; expiry times are wall-clock, shared by processes."""

    def __init__(self, path: str, ttl: float = DEFAULT_TTL, busy_timeout: float = 10.0) -> None:
        self.path = os.path.abspath(path)
        self.url = _PREFIX + self.path
        self._ttl = ttl
        self._busy_timeout = busy_timeout
        _make_private_dirs(os.path.dirname(self.path))
        # Create the file ourselves so that it is born 0o600; SQLite gives the -wal and
        # -shm files the mode of the database file.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        # Guards _conn, _closed and _next_purge. Invariant: _conn is used only while
        # holding the lock (one sqlite3 connection must not run two statements at once);
        # it is None after close(), and in a forked child until its first use.
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inherited_conn: sqlite3.Connection | None = None  # see _after_fork_in_child
        self._closed = False
        self._next_purge = 0.0
        with self._lock:
            self._set_up(self._connection())
        for suffix in ("", "-wal", "-shm"):
            _make_owner_only(self.path + suffix)
        # A forked child (gunicorn's preload) must not use the parent's connection.
        _live.add(self)

    @classmethod
    def from_url(cls, url: str, ttl: float = DEFAULT_TTL) -> SQLiteStore:
        """Open ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
        if not url.lower().startswith(_PREFIX):
            raise ValueError(
                f"malformed SQLite store URL {url!r}: expected sqlite:///relative/path or "
                "sqlite:////absolute/path (three slashes, then the path)"
            )
        path = url[len(_PREFIX) :]
        if not path or path == ":memory:" or "?" in path:
            raise ValueError(
                f"malformed SQLite store URL {url!r}: it needs a file path and takes no query "
                "parameters (use memory:// for an in-memory store)"
            )
        return cls(path, ttl=ttl)

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL and create the schema, waiting out other processes.

        SQLite answers "database is locked" at once, without its busy handler, when a
        process switches to WAL while others have the file open (several workers starting
        together on a new file), so that case is retried here, up to the busy timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(0.01)

    def _connection(self) -> sqlite3.Connection:
        """Return this process's connection, opening it on first use. Hold _lock."""
        if self._closed:
            raise RuntimeError(f"result store {self.url} is closed")
        if self._conn is None:
            # isolation_level=None: autocommit; every statement here is its own
            # transaction, so no transaction is ever held between calls.
            self._conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            # Safe with WAL: a commit survives a crash of the process, just not of the OS.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        return self._conn

    def put(self, record: dict[str, Any]) -> None:
        self.put_many([record])

    def put_many(self, records: list[dict[str, Any]]) -> None:
        """Write the records in one transaction: one commit however many there are."""
        now = time.time()
        rows = []
        for record in records:
            task_id, text = encode_record(record)
            owner, status = record.get("owner"), record.get("status")
            rows.append(
                (
                    task_id,
                    owner if isinstance(owner, str) else None,
                    status if isinstance(status, str) else None,
                    now + self._ttl,
                    text,
                )
            )
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO task_records"
                    " (task_id, owner, status, expires_at, record) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                if now >= self._next_purge:
                    self._next_purge = now + min(self._ttl, 60.0)
                    conn.execute("DELETE FROM task_records WHERE expires_at <= ?", (now,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def get(self, task_id: int) -> dict[str, Any] | None:
        now = time.time()
        with self._lock:
            conn = self._connection()
            row = conn.execute(
                "SELECT record, expires_at FROM task_records WHERE task_id = ?", (task_id,)
            ).fetchone()
            if row is None:
                return None
            if row[1] <= now:
                # Conditional: another process may have refreshed it since the SELECT.
                conn.execute(
                    "DELETE FROM task_records WHERE task_id = ? AND expires_at <= ?",
                    (task_id, now),
                )
                return None
        return decode_record(row[0])

    def unfinished(self, owner: str) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT record FROM task_records WHERE owner = ?"
                    f" AND status IN ({_UNFINISHED_SQL}) AND expires_at > ? ORDER BY task_id",
                    (owner, now),
                )
                .fetchall()
            )
        records = (decode_record(text) for (text,) in rows)
        return [r for r in records if is_unfinished(r, owner)]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _after_fork_in_child(self) -> None:
        """Drop the parent's connection and lock: SQLite connections must not cross a fork.

        The inherited connection is kept referenced, not closed: closing it could touch
        the parent's file locks. The child opens its own on first use.
        """
        self._inherited_conn = self._conn
        self._conn = None
        self._lock = threading.Lock()


# The stores of this process, held weakly: one at-fork hook for all of them, rather
# than one per store, which would pile up with every store opened and never go.
_live: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for store in list(_live):
        store._after_fork_in_child()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def _make_private_dirs(directory: str) -> None:
    """Create ``directory`` and its missing parents with mode 0o700 (existing ones stay)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another process meanwhile
            os.mkdir(path, 0o700)


def _make_owner_only(path: str) -> None:
    """Restrict an existing file of ours to 0o600; leave others' files and absent ones."""
    try:
        info = os.stat(path)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass
