"""Values of the AgentCore Runtime contract: ping statuses, task states, header names."""

from __future__ import annotations

from enum import Enum, StrEnum


class PingStatus(str, Enum):
    """What ``GET /ping`` reports to the managed runtime.

    ``HEALTHY`` lets the idle-timeout countdown run; ``HEALTHY_BUSY`` tells the
    runtime that work is in progress and the session must not be reclaimed.
    """

    HEALTHY = "Healthy"
    HEALTHY_BUSY = "HealthyBusy"


class TaskState(StrEnum):
    """Where an active task is, as task info's ``"state"`` reports it.

    A ``StrEnum``: equal to its value, so states read back from JSON (another
    worker's published tasks) compare equal, and it serializes as that value.
    """

    #: Submitted to the background executor, waiting for a thread or the loop.
    QUEUED = "queued"
    #: Running (every task registered by hand or by ``@async_task`` is).
    RUNNING = "running"


class RecordStatus(StrEnum):
    """A background task's outcome so far: a record's ``"status"``.

    A ``StrEnum`` for the same reason as :class:`TaskState`: records come back
    from a store as plain JSON strings, and must compare equal to these.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Its process ended, or the server shut down, before it finished.
    INTERRUPTED = "interrupted"


SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_ID_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
ACCESS_TOKEN_HEADER = "WorkloadAccessToken"
IDENTITY_WAT_HEADER = "X-Amz-Bedrock-AgentCore-Identity-WAT"
OAUTH2_CALLBACK_URL_HEADER = "OAuth2CallbackUrl"
AUTHORIZATION_HEADER = "Authorization"
CUSTOM_HEADER_PREFIX = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-"

#: The payload key that selects a debug action when the app runs with ``debug=True``.
DEBUG_ACTION_KEY = "_agent_core_app_action"
