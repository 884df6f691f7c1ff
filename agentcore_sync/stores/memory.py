"""``memory://``: records in a dict of this process, for tests and throwaway runs."""

from __future__ import annotations

import threading
import time
from typing import Any

from agentcore_sync.stores import (
    DEFAULT_TTL,
    ResultStore,
    decode_record,
    encode_record,
    is_unfinished,
)


class MemoryStore(ResultStore):
    """Records in memory, lost with the process. Keeps JSON text like the other stores,
    so tests on ``memory://`` catch unserializable records and shared mutable state."""

    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        self.url = "memory://"
        self._ttl = ttl
        # Guards _records and _next_purge. Invariant: _records maps task_id to
        # (monotonic expiry time, JSON text); an entry past its expiry is treated as absent
        # and is deleted by whoever sees it first.
        self._lock = threading.Lock()
        self._records: dict[int, tuple[float, str]] = {}
        self._next_purge = time.monotonic() + min(ttl, 60.0)

    @classmethod
    def from_url(cls, url: str, ttl: float = DEFAULT_TTL) -> MemoryStore:
        """Open ``memory://``; anything after the scheme is a mistake worth reporting."""
        if url.lower() not in ("memory://", "memory:"):
            raise ValueError(f"a memory store URL is just 'memory://', not {url!r}")
        return cls(ttl=ttl)

    def put(self, record: dict[str, Any]) -> None:
        task_id, text = encode_record(record)
        now = time.monotonic()
        with self._lock:
            self._records[task_id] = (now + self._ttl, text)
            if now >= self._next_purge:
                self._next_purge = now + min(self._ttl, 60.0)
                for expired in [k for k, (exp, _) in self._records.items() if exp <= now]:
                    del self._records[expired]

    def get(self, task_id: int) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            entry = self._records.get(task_id)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._records[task_id]
                return None
            text = entry[1]
        return decode_record(text)

    def unfinished(self, owner: str) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            texts = [text for _, (exp, text) in sorted(self._records.items()) if exp > now]
        records = (decode_record(text) for text in texts)
        return [r for r in records if is_unfinished(r, owner)]

    def close(self) -> None:
        with self._lock:
            self._records.clear()
