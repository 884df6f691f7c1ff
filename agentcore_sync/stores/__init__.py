"""Result stores: where background-task records live, chosen by URL.

A record is a JSON-serializable dict keyed by ``record["task_id"]`` (an int). Every
backend stores the JSON text of the record, so all of them hand back an equal, fresh
dict and reject the same unserializable values. Backends:

- ``memory://``: this process only, for tests.
- ``sqlite:///relative/path`` or ``sqlite:////absolute/path``: the embedded default;
  survives a restart and is shared by the processes of one machine.
- ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``): shared across
  processes and machines; needs the ``agentcore_sync[redis]`` extra.
- ``dynamodb://TABLE[?overflow=s3://BUCKET/PREFIX]`` and ``s3://BUCKET[/PREFIX]``:
  shared, and outliving any machine (an AgentCore microVM); need the
  ``agentcore_sync[aws]`` extra. A terminal record there is final.

The runtime wraps whichever store it opens in :class:`ResilientStore`, so that an
unreachable store never fails a task or a request.
"""

from __future__ import annotations

import abc
import json
import re
from typing import Any

from agentcore_sync.models import RecordStatus

__all__ = [
    "UNFINISHED_STATUSES",
    "DynamoDBStore",
    "InvalidRecordError",
    "MemoryStore",
    "RedisStore",
    "ResilientStore",
    "ResultStore",
    "S3Store",
    "SQLiteStore",
    "open_store",
    "redact_url",
]

#: Statuses of a task that has not finished yet; ``unfinished()`` returns these. A
#: record decoded from JSON holds plain strings, which are in this set all the same
#: (a StrEnum member hashes and compares as its value).
UNFINISHED_STATUSES: frozenset[RecordStatus] = frozenset(
    {RecordStatus.QUEUED, RecordStatus.RUNNING}
)

#: The URLs ``open_store`` takes, for error messages.
SCHEMES = (
    "memory://, sqlite:///path, redis://host:port/db, rediss://host:port/db, "
    "dynamodb://TABLE, s3://BUCKET/PREFIX"
)

#: Default record lifetime, in seconds after the record's last put.
DEFAULT_TTL = 86400.0

_REDACTED = "***"
# "scheme://userinfo@": the userinfo runs to the last "@" before the path, query or fragment.
_URL_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@")
# Query parameters whose values are secrets (e.g. redis-py's ``?password=``).
_SECRET_QUERY_VALUE = re.compile(r"([?&][^=&#]*(?:pass|secret|token|auth)[^=&#]*=)[^&#]*", re.I)
# "//userinfo@" anywhere in a text: what redact_text hides.
_USERINFO = re.compile(r"(//)[^/@\s]*@")


# One encoder for every record: json.dumps with any non-default argument builds a
# new encoder per call, a third of the cost of encoding a small record.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


class InvalidRecordError(ValueError):
    """A record that no store can keep: not a dict, no int task_id, or not JSON."""


class ResultStore(abc.ABC):
    """Where task records are kept, by ``task_id``, for ``ttl`` seconds after each put.

    Implementations are thread-safe. ``url`` is the redacted URL, safe to log.
    """

    url: str

    @abc.abstractmethod
    def put(self, record: dict[str, Any]) -> None:
        """Insert or replace the record with this ``task_id``, and restart its TTL."""

    def put_many(self, records: list[dict[str, Any]]) -> None:
        """Put several records; backends make it one round trip or one transaction."""
        for record in records:
            self.put(record)

    @abc.abstractmethod
    def get(self, task_id: int) -> dict[str, Any] | None:
        """Return the record, or None when it is unknown or expired."""

    @abc.abstractmethod
    def unfinished(self, owner: str) -> list[dict[str, Any]]:
        """Return ``owner``'s records whose status is queued or running, by task_id."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is not used afterwards."""

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def encode_record(record: dict[str, Any]) -> tuple[int, str]:
    """Check a record and return ``(task_id, json_text)``; raise InvalidRecordError."""
    if not isinstance(record, dict):
        raise InvalidRecordError(f"a record must be a dict, not {type(record).__name__}")
    task_id = record.get("task_id")
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        raise InvalidRecordError(f"record['task_id'] must be an int, not {task_id!r}")
    try:
        text = _ENCODER.encode(record)
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError(
            f"record of task {task_id} is not JSON-serializable: {exc}"
        ) from exc
    return task_id, text


def decode_record(text: str | bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_record`."""
    record: dict[str, Any] = json.loads(text)
    return record


def is_unfinished(record: dict[str, Any], owner: str) -> bool:
    """True when the record belongs to ``owner`` and is queued or running."""
    return record.get("owner") == owner and record.get("status") in UNFINISHED_STATUSES


def redact_url(url: str) -> str:
    """Return ``url`` with its password (and secret query values) replaced by ``***``.

    ``redis://:pw@h:6379/0`` -> ``redis://:***@h:6379/0``; ``redis://user:pw@h`` ->
    ``redis://user:***@h``; a lone userinfo without a colon (``redis://token@h``) may be
    a secret too and becomes ``***``. The rest of the URL is kept character for
    character. Never raises: it is used when logging errors.
    """

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        return f"{match['head']}{user}:{_REDACTED}@" if colon else f"{match['head']}{_REDACTED}@"

    url = _URL_USERINFO.sub(hide, url, count=1)
    return _SECRET_QUERY_VALUE.sub(rf"\g<1>{_REDACTED}", url)


def redact_text(text: str) -> str:
    """Hide the userinfo of any URL inside ``text`` (an error message, say)."""
    return _USERINFO.sub(rf"\1{_REDACTED}@", text)


def open_store(url: str, ttl: float = DEFAULT_TTL) -> ResultStore:
    """Open the store that ``url`` names; records expire ``ttl`` seconds after a put.

    Raises ValueError for an unknown scheme or a malformed URL (the message shows the
    redacted URL only), and ImportError when the backend's extra is not installed.
    Opening does not contact a network store; an unreachable one fails on use.
    """
    if not isinstance(url, str) or ":" not in url:
        raise ValueError(
            f"result store URL {redact_url(str(url))!r} has no scheme; expected one of " + SCHEMES
        )
    if not ttl > 0:
        raise ValueError(f"result store ttl must be a positive number of seconds, not {ttl!r}")
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return MemoryStore.from_url(url, ttl=ttl)
    if scheme == "sqlite":
        return SQLiteStore.from_url(url, ttl=ttl)
    if scheme in ("redis", "rediss"):
        return RedisStore.from_url(url, ttl=ttl)
    if scheme == "dynamodb":
        return DynamoDBStore.from_url(url, ttl=ttl)
    if scheme == "s3":
        return S3Store.from_url(url, ttl=ttl)
    raise ValueError(
        f"unknown result store scheme {scheme!r} in {redact_url(url)!r}; expected one of " + SCHEMES
    )


# The backends import ResultStore and the helpers above from this package, so they are
# imported after those are defined.
from agentcore_sync.stores.dynamodb import DynamoDBStore  # noqa: E402
from agentcore_sync.stores.memory import MemoryStore  # noqa: E402
from agentcore_sync.stores.redis import RedisStore  # noqa: E402
from agentcore_sync.stores.resilient import ResilientStore  # noqa: E402
from agentcore_sync.stores.s3 import S3Store  # noqa: E402
from agentcore_sync.stores.sqlite import SQLiteStore  # noqa: E402
