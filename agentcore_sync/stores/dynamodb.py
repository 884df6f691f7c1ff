"""``dynamodb://TABLE[?overflow=s3://BUCKET/PREFIX]``: records in DynamoDB, with boto3
(``agentcore_sync[aws]``).

One item per task, keyed by ``task_id`` (a number): the record's JSON in
``record``, its ``status`` and ``owner`` beside it, and ``expires_at`` (epoch
seconds), the table's TTL attribute, so that DynamoDB deletes it ttl after its
last put (``get`` ignores it from then, by ``expires``, as DynamoDB deletes late).

A terminal record is final: every put is conditional on the item holding no
terminal status, so when two writers race (a restarted server recording
``interrupted``, a late finish elsewhere), the first terminal record stays.

An item holds at most 400 KB. A record larger than ``MAX_INLINE`` goes to S3
with ``?overflow=s3://BUCKET/PREFIX``: the object holds the JSON and the item
points to it (``record_at``), so that ``get`` brings it back whole. Without
overflow such a record is replaced by a ``failed`` one that says why, so that the
task's outcome is never lost.
"""

from __future__ import annotations

import math
import time
from typing import Any

from agentcore_sync.models import RecordStatus
from agentcore_sync.stores import (
    DEFAULT_TTL,
    UNFINISHED_STATUSES,
    ResultStore,
    decode_record,
    encode_record,
    redact_url,
)
from agentcore_sync.stores.aws import TERMINAL_STATUSES, StoreURL, client, error_code
from agentcore_sync.stores.s3 import S3Store

#: Bytes of record JSON kept in the item itself; DynamoDB's item limit is 400 KB,
#: attribute names and the other attributes included.
MAX_INLINE = 350_000
#: The table's TTL attribute (``store init`` enables it).
TTL_ATTRIBUTE = "expires_at"

# A put lands unless the item holds a terminal status already.
_NOT_TERMINAL = "attribute_not_exists(task_id) OR NOT (#status IN ({}))".format(
    ", ".join(f":t{i}" for i in range(len(TERMINAL_STATUSES)))
)
_TERMINAL_VALUES = {f":t{i}": {"S": status} for i, status in enumerate(TERMINAL_STATUSES)}


class DynamoDBStore(ResultStore):
    """Records in one DynamoDB table, visible to every process with access to it."""

    def __init__(self, url: str, ttl: float = DEFAULT_TTL) -> None:
        parsed = StoreURL(url, "dynamodb", ("region", "endpoint", "overflow"))
        self.url = redact_url(url)
        self.table = parsed.name
        self.ttl = ttl
        options = parsed.options
        overflow = options.pop("overflow", None)
        self.overflow = S3Store(overflow, ttl) if overflow else None
        self._client = client("dynamodb", options)

    @classmethod
    def from_url(cls, url: str, ttl: float = DEFAULT_TTL) -> DynamoDBStore:
        return cls(url, ttl=ttl)

    def init(self) -> list[str]:
        """Create the table (on-demand, keyed by ``task_id``) and enable its TTL, and the
        overflow bucket if any; idempotent. What was done, a line each."""
        done = []
        try:
            self._client.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "N"}],
                BillingMode="PAY_PER_REQUEST",
            )
            done.append(f"created table {self.table} (on-demand, key task_id)")
        except Exception as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
            done.append(f"table {self.table} exists already")
        self._client.get_waiter("table_exists").wait(TableName=self.table)
        ttl = self._client.describe_time_to_live(TableName=self.table)
        state = ttl.get("TimeToLiveDescription", {})
        if state.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            done.append(f"TTL on {state.get('AttributeName')} enabled already")
        else:
            self._client.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
            done.append(f"enabled TTL on {TTL_ATTRIBUTE}")
        if self.overflow is not None:
            done += self.overflow.init()
        return done

    def put(self, record: dict[str, Any]) -> None:
        task_id, text = encode_record(record)
        status = str(record.get("status"))
        expires = time.time() + self.ttl
        item: dict[str, Any] = {
            "task_id": {"N": str(task_id)},
            "status": {"S": status},
            # Whole seconds for DynamoDB's TTL; to the millisecond for get().
            TTL_ATTRIBUTE: {"N": str(math.ceil(expires))},
            "expires": {"N": f"{expires:.3f}"},
        }
        owner = record.get("owner")
        if isinstance(owner, str):
            item["owner"] = {"S": owner}
        if len(text.encode()) <= MAX_INLINE:
            item["record"] = {"S": text}
        elif self.overflow is not None:
            if not self.overflow.write(task_id, text.encode(), status):
                return  # a terminal record is there already
            item["record_at"] = {"S": self.overflow.key(task_id)}
        else:
            item["record"] = {"S": encode_record(too_large(record, len(text.encode())))[1]}
            item["status"] = {"S": RecordStatus.FAILED.value}
        try:
            self._client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=_NOT_TERMINAL,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_TERMINAL_VALUES,
            )
        except Exception as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def get(self, task_id: int) -> dict[str, Any] | None:
        found = self._client.get_item(
            TableName=self.table, Key={"task_id": {"N": str(task_id)}}, ConsistentRead=True
        ).get("Item")
        return None if found is None else self._record_of(found)

    def _record_of(self, item: dict[str, Any]) -> dict[str, Any] | None:
        if float(item["expires"]["N"]) <= time.time():
            return None  # expired: DynamoDB deletes it within days, not at once
        if "record" in item:
            return decode_record(item["record"]["S"])
        if self.overflow is None:
            raise RuntimeError(
                f"task {item['task_id']['N']}'s record is in S3 "
                f"({item['record_at']['S']}): open the store with ?overflow=s3://..."
            )
        body = self.overflow.read(item["record_at"]["S"])
        return None if body is None else decode_record(body)

    def unfinished(self, owner: str) -> list[dict[str, Any]]:
        # A scan, filtered: read once, when a server starts, to recover its tasks.
        statuses = sorted(status.value for status in UNFINISHED_STATUSES)
        values = {f":u{i}": {"S": status} for i, status in enumerate(statuses)}
        records = []
        for page in self._client.get_paginator("scan").paginate(
            TableName=self.table,
            ConsistentRead=True,
            FilterExpression="#owner = :owner AND #status IN ({})".format(", ".join(values)),
            ExpressionAttributeNames={"#owner": "owner", "#status": "status"},
            ExpressionAttributeValues={":owner": {"S": owner}, **values},
        ):
            for item in page.get("Items", []):
                record = self._record_of(item)
                if record is not None:
                    records.append(record)
        return sorted(records, key=lambda record: record["task_id"])

    def close(self) -> None:
        self._client.close()
        if self.overflow is not None:
            self.overflow.close()


def too_large(record: dict[str, Any], size: int) -> dict[str, Any]:
    """The ``failed`` record that stands for one too large to keep."""
    return {
        **record,
        "status": RecordStatus.FAILED.value,
        "result": None,
        "error": (
            f"the result is too large for a DynamoDB item ({size:,} bytes of JSON, "
            f"over {MAX_INLINE:,}); open the store with ?overflow=s3://BUCKET/PREFIX "
            "to keep large results in S3"
        ),
    }
