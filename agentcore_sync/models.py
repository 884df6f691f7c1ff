"""Values of the AgentCore Runtime contract: ping statuses and header names."""

from __future__ import annotations

from enum import Enum


class PingStatus(str, Enum):
    """What ``GET /ping`` reports to the managed runtime.

    ``HEALTHY`` lets the idle-timeout countdown run; ``HEALTHY_BUSY`` tells the
    runtime that work is in progress and the session must not be reclaimed.
    """

    HEALTHY = "Healthy"
    HEALTHY_BUSY = "HealthyBusy"


SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_ID_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
ACCESS_TOKEN_HEADER = "WorkloadAccessToken"
IDENTITY_WAT_HEADER = "X-Amz-Bedrock-AgentCore-Identity-WAT"
OAUTH2_CALLBACK_URL_HEADER = "OAuth2CallbackUrl"
AUTHORIZATION_HEADER = "Authorization"
CUSTOM_HEADER_PREFIX = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-"

#: The payload key that selects a debug action when the app runs with ``debug=True``.
DEBUG_ACTION_KEY = "_agent_core_app_action"
