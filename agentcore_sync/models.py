"""Values of the AgentCore Runtime contract: ping statuses, task states, header names."""

from __future__ import annotations

from dataclasses import dataclass
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

#: The W3C baggage header, and its entries that the managed runtime fills: the
#: configuration bundle of this request, and the gateway's routing experiment.
BAGGAGE_HEADER = "baggage"
BAGGAGE_BUNDLE_ARN = "aws.agentcore.configbundle_arn"
BAGGAGE_BUNDLE_VERSION = "aws.agentcore.configbundle_version"
BAGGAGE_EXPERIMENT_ARN = "aws.agentcore.gateway.routing_experiment_arn"
BAGGAGE_EXPERIMENT_VARIANT = "aws.agentcore.gateway.routing_experiment_variant_name"


@dataclass(frozen=True)
class ConfigBundleRef:
    """Which version of a configuration bundle a request runs with.

    Read from the request's ``baggage`` header; the fields and checks are the
    official SDK's, so code that reads ``bundle_arn``, ``bundle_version`` or
    ``bundle_id`` works unchanged. Raises ``ValueError`` for an empty field or an
    ARN without a bundle id after its last ``/``.
    """

    bundle_arn: str
    bundle_version: str

    def __post_init__(self) -> None:
        if not self.bundle_arn:
            raise ValueError("bundle_arn must not be empty")
        if not self.bundle_version:
            raise ValueError("bundle_version must not be empty")
        _, slash, bundle_id = self.bundle_arn.rpartition("/")
        if not slash or not bundle_id:
            raise ValueError(f"bundle_arn has no bundle id after its last '/': {self.bundle_arn!r}")

    @property
    def bundle_id(self) -> str:
        """The bundle id: the ARN's last path segment."""
        return self.bundle_arn.rpartition("/")[2]


#: The payload key that selects a debug action when the app runs with ``debug=True``.
DEBUG_ACTION_KEY = "_agent_core_app_action"
