"""``redis://[[user]:password@]host[:port][/db]`` and ``rediss://``: records shared
across processes and machines, with redis-py (the ``agentcore_sync[redis]`` extra).

Layout, under a key prefix (default ``agentcore_sync:``):

- ``<prefix>task:<task_id>``: the record's JSON, with the store's TTL (SET PX).
- ``<prefix>unfinished:<owner>``: a set of that owner's queued/running task ids, kept in
  the same MULTI/EXEC transaction as each put, so ``unfinished(owner)`` reads one set
  instead of scanning the keyspace.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from agentcore_sync.stores import (
    DEFAULT_TTL,
    UNFINISHED_STATUSES,
    ResultStore,
    decode_record,
    encode_record,
    is_unfinished,
    redact_url,
)

DEFAULT_PREFIX = "agentcore_sync:"
#: Connect and read timeout, in seconds: a down Redis fails a call fast, never hangs it.
DEFAULT_SOCKET_TIMEOUT = 2.0


def _import_redis() -> ModuleType:
    """Import redis-py, or explain which extra provides it."""
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            "the redis:// result store needs the redis package: pip install 'agentcore_sync[redis]'"
        ) from exc
    return redis


def _check_url(url: str) -> None:
    """Raise ValueError (naming only the redacted URL) unless ``url`` is a usable Redis URL."""
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises ValueError when it is not a number
    except ValueError as exc:
        problem = str(exc)
    else:
        db = parts.path.lstrip("/")
        if parts.scheme.lower() not in ("redis", "rediss"):
            problem = "the scheme must be redis:// or rediss://"
        elif not parts.hostname:
            problem = "it names no host"
        elif db and not db.isdigit():
            problem = f"the database must be a number, not {db!r}"
    if problem:
        raise ValueError(
            f"malformed Redis store URL {redact_url(url)!r} ({problem}); "
            "expected redis://[[user]:password@]host[:port][/db]"
        )


class RedisStore(ResultStore):
    """Records in Redis, visible to every process that opens the same URL and prefix."""

    def __init__(
        self,
        url: str,
        ttl: float = DEFAULT_TTL,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> None:
        _check_url(url)
        redis = _import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = redact_url(url)
        self._ttl_ms = max(1, round(ttl * 1000))
        self._prefix = prefix
        try:
            # No retries: the pool already replaces connections that died while idle (a
            # Redis restart), and a retry would double the wait on a Redis that is down.
            # Query parameters in the URL override these keyword arguments.
            self._client = redis.Redis.from_url(
                url,
                socket_connect_timeout=socket_timeout,
                socket_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:  # redis-py's own URL checks (query parameters)
            raise ValueError(f"malformed Redis store URL {self.url!r}: {exc}") from None

    @classmethod
    def from_url(cls, url: str, ttl: float = DEFAULT_TTL) -> RedisStore:
        """Open ``redis://...`` or ``rediss://...`` with the default prefix and timeouts."""
        return cls(url, ttl=ttl)

    def _task_key(self, task_id: int | str) -> str:
        return f"{self._prefix}task:{task_id}"

    def _index_key(self, owner: str) -> str:
        return f"{self._prefix}unfinished:{owner}"

    def put(self, record: dict[str, Any]) -> None:
        self.put_many([record])

    def put_many(self, records: list[dict[str, Any]]) -> None:
        """Write the records, and their owners' unfinished index, in one MULTI/EXEC."""
        encoded = [(encode_record(record), record.get("owner"), record) for record in records]
        with self._client.pipeline(transaction=True) as pipe:
            for (task_id, text), owner, record in encoded:
                pipe.set(self._task_key(task_id), text, px=self._ttl_ms)
                if isinstance(owner, str):
                    index = self._index_key(owner)
                    if record.get("status") in UNFINISHED_STATUSES:
                        # The set outlives each member's record: it expires ttl after the
                        # newest unfinished put, each record at most ttl after its own.
                        pipe.sadd(index, task_id)
                        pipe.pexpire(index, self._ttl_ms)
                    else:
                        pipe.srem(index, task_id)
            pipe.execute()

    def get(self, task_id: int) -> dict[str, Any] | None:
        text = self._client.get(self._task_key(task_id))
        return None if text is None else decode_record(text)

    def unfinished(self, owner: str) -> list[dict[str, Any]]:
        index = self._index_key(owner)
        ids = sorted(int(member) for member in self._client.smembers(index))
        if not ids:
            return []
        texts = self._client.mget([self._task_key(task_id) for task_id in ids])
        records, stale = [], []
        for task_id, text in zip(ids, texts, strict=True):
            record = None if text is None else decode_record(text)
            if record is not None and is_unfinished(record, owner):
                records.append(record)
            else:
                stale.append(task_id)
        if stale:
            # Expired records, or records since put under another owner. Not atomic with
            # the reads above: an expired id put again as unfinished in between would drop
            # out of the index, which needs a task silent for longer than the TTL.
            self._client.srem(index, *stale)
        return records

    def close(self) -> None:
        self._client.close()
