"""``s3://BUCKET[/PREFIX]``: records of any size in S3, with boto3 (``agentcore_sync[aws]``).

Layout, under the prefix:

- ``tasks/<task_id>.json``: the record's JSON; its status and expiry time in the
  object's metadata, so that a write reads a head, not the body.
- ``unfinished/<owner>/<task_id>``: an empty marker while the task is queued or
  running, so that ``unfinished(owner)`` lists one folder instead of every record.

A terminal record is final: every write is conditional on the object it replaces
(``If-Match`` its ETag, or ``If-None-Match: *`` for the first), and a write that
finds a terminal record there leaves it. So when two writers race (a restarted
server recording ``interrupted``, a late finish elsewhere), the first terminal
record stays. S3 has no per-object lifetime: ``get`` treats a record past its
expiry as gone, and ``agentcore-sync store init`` adds the bucket's lifecycle rule
that deletes it.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import quote

from agentcore_sync.stores import (
    DEFAULT_TTL,
    UNFINISHED_STATUSES,
    ResultStore,
    decode_record,
    encode_record,
    is_unfinished,
    redact_url,
)
from agentcore_sync.stores.aws import TERMINAL_STATUSES, StoreURL, client, error_code

#: How often a write is tried again when another writer replaced the record in between.
CONDITIONAL_ATTEMPTS = 8
_MISSING = ("404", "NoSuchKey", "NotFound")
_CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class S3Store(ResultStore):
    """Records as objects of one bucket, visible to every process with access to it."""

    def __init__(self, url: str, ttl: float = DEFAULT_TTL) -> None:
        parsed = StoreURL(url, "s3", ("region", "endpoint"))
        self.url = redact_url(url)
        self.bucket = parsed.name
        self.prefix = f"{parsed.prefix}/" if parsed.prefix else ""
        self.ttl = ttl
        self._client = client("s3", parsed.options)

    @classmethod
    def from_url(cls, url: str, ttl: float = DEFAULT_TTL) -> S3Store:
        return cls(url, ttl=ttl)

    def init(self) -> list[str]:
        """Create the bucket and the lifecycle rule that deletes expired records;
        idempotent. What was done, a line each."""
        done = []
        region = self._client.meta.region_name
        options: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            # In us-east-1, creating a bucket one owns already succeeds: look first.
            self._client.head_bucket(Bucket=self.bucket)
            done.append(f"bucket {self.bucket} exists already")
        except Exception as exc:
            if error_code(exc) not in _MISSING:
                raise
            self._client.create_bucket(**options)
            done.append(f"created bucket {self.bucket}")
        days = max(1, math.ceil(self.ttl / 86400))
        rule = {
            "ID": f"agentcore_sync {self.prefix or '/'}",
            "Filter": {"Prefix": self.prefix},
            "Status": "Enabled",
            "Expiration": {"Days": days},
        }
        try:
            rules = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
        except Exception as exc:
            if error_code(exc) != "NoSuchLifecycleConfiguration":
                raise
            rules = []
        ours = [r for r in rules if r.get("ID") == rule["ID"]]
        if ours and ours[0].get("Expiration") == rule["Expiration"]:
            done.append(f"records under {self.prefix or '/'} expire after {days} day(s) already")
        else:
            others = [r for r in rules if r.get("ID") != rule["ID"]]
            self._client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": [*others, rule]}
            )
            done.append(f"records under {self.prefix or '/'} now expire after {days} day(s)")
        return done

    def key(self, task_id: int) -> str:
        return f"{self.prefix}tasks/{task_id}.json"

    def _markers(self, owner: str) -> str:
        return f"{self.prefix}unfinished/{quote(owner, safe='')}/"

    # -- writing --------------------------------------------------------------

    def put(self, record: dict[str, Any]) -> None:
        task_id, text = encode_record(record)
        if not self.write(task_id, text.encode(), str(record.get("status"))):
            return
        owner = record.get("owner")
        if isinstance(owner, str):
            marker = f"{self._markers(owner)}{task_id}"
            if record.get("status") in UNFINISHED_STATUSES:
                self._client.put_object(Bucket=self.bucket, Key=marker, Body=b"")
            else:
                self._client.delete_object(Bucket=self.bucket, Key=marker)

    def write(self, task_id: int, body: bytes, status: str) -> bool:
        """Write a record's JSON unless a terminal record is there already; whether it
        was written."""
        key = self.key(task_id)
        metadata = {"status": status, "expires-at": f"{time.time() + self.ttl:.3f}"}
        for _ in range(CONDITIONAL_ATTEMPTS):
            head = self._head(key)
            if head is not None and head["Metadata"].get("status") in TERMINAL_STATUSES:
                return False
            condition = {"IfMatch": head["ETag"]} if head is not None else {"IfNoneMatch": "*"}
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    Metadata=metadata,
                    **condition,
                )
                return True
            except Exception as exc:
                if error_code(exc) not in _CONFLICT:
                    raise
        raise RuntimeError(
            f"task {task_id}'s record in {self.url} kept changing under "
            f"{CONDITIONAL_ATTEMPTS} conditional writes"
        )

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=key)  # type: ignore[no-any-return]
        except Exception as exc:
            if error_code(exc) in _MISSING:
                return None
            raise

    # -- reading --------------------------------------------------------------

    def get(self, task_id: int) -> dict[str, Any] | None:
        body = self.read(self.key(task_id))
        return None if body is None else decode_record(body)

    def read(self, key: str) -> bytes | None:
        """An object's body; None when it is missing or past its expiry."""
        try:
            found = self._client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in _MISSING:
                return None
            raise
        with found["Body"] as body:
            data: bytes = body.read()
        expires_at = found.get("Metadata", {}).get("expires-at")
        if expires_at is not None and float(expires_at) <= time.time():
            return None
        return data

    def unfinished(self, owner: str) -> list[dict[str, Any]]:
        prefix = self._markers(owner)
        ids: list[int] = []
        for page in self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if name.isdigit():
                    ids.append(int(name))
        records = []
        for task_id in sorted(ids):
            record = self.get(task_id)
            if record is not None and is_unfinished(record, owner):
                records.append(record)
            else:  # expired, finished, or since put under another owner
                self._client.delete_object(Bucket=self.bucket, Key=f"{prefix}{task_id}")
        return records

    def close(self) -> None:
        self._client.close()
