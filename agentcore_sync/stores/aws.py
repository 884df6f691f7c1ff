"""What the DynamoDB and S3 stores share: boto3, found lazily, and its clients.

boto3 is the ``agentcore_sync[aws]`` extra: the stores import it when opened, so
that the runtime never needs it otherwise. Clients take the standard AWS
configuration chain (environment, profile, instance role), ``AWS_ENDPOINT_URL``
included, and an ``?endpoint=`` or ``?region=`` of the store's URL over it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agentcore_sync.models import RecordStatus
from agentcore_sync.stores import redact_url

#: Statuses after which a task's record never changes: the first one written wins.
TERMINAL_STATUSES = tuple(
    status.value
    for status in RecordStatus
    if status not in (RecordStatus.QUEUED, RecordStatus.RUNNING)
)
#: Connect and read timeouts, in seconds, and no retries: a store that is down
#: fails a call fast (``ResilientStore`` keeps the records and retries).
TIMEOUT = 2.0


def import_boto3(scheme: str) -> ModuleType:
    """Import boto3, or explain which extra provides it."""
    try:
        import boto3
    except ImportError as exc:
        raise ImportError(
            f"the {scheme}:// result store needs boto3: pip install 'agentcore_sync[aws]'"
        ) from exc
    return boto3


class StoreURL:
    """``scheme://NAME[/PREFIX][?region=R&endpoint=URL&overflow=s3://...]``, checked."""

    def __init__(self, url: str, scheme: str, options: tuple[str, ...]) -> None:
        problem = None
        try:
            parts = urlsplit(url)
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError as exc:
            parts, query, problem = None, {}, str(exc)
        if parts is not None:
            unknown = sorted(set(query) - set(options))
            if parts.scheme.lower() != scheme:
                problem = f"the scheme must be {scheme}://"
            elif not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
                problem = "it names no table or bucket" if not parts.netloc else "bad name"
            elif unknown:
                problem = f"unknown option(s) {', '.join(unknown)}; known: {', '.join(options)}"
            elif any(len(values) != 1 for values in query.values()):
                problem = "each option is given once"
        if problem:
            raise ValueError(f"malformed {scheme} store URL {redact_url(url)!r} ({problem})")
        assert parts is not None
        self.name = parts.netloc
        self.prefix = parts.path.strip("/")
        self.options = {key: values[0] for key, values in query.items()}


def client(service: str, options: dict[str, str]) -> Any:
    """A boto3 client for ``service`` with the store's timeouts, and its URL's
    region and endpoint where given."""
    boto3 = import_boto3("dynamodb" if service == "dynamodb" else "s3")
    from botocore.config import Config

    config = Config(
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        retries={"max_attempts": 1, "mode": "standard"},
    )
    return boto3.session.Session().client(
        service,
        region_name=options.get("region"),
        endpoint_url=options.get("endpoint"),
        config=config,
    )


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError``; None for any other error."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None
