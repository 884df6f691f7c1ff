"""The Amazon Bedrock AgentCore Runtime contract on Flask, gunicorn, waitress and threads.

Code written for the official SDK runs after replacing the import
``bedrock_agentcore.runtime`` with ``agentcore_sync``.
"""

from .app import AgentCoreApp, BedrockAgentCoreApp
from .context import BedrockAgentCoreContext, RequestContext
from .models import PingStatus
from .runtime import AgentCore

__all__ = [
    "AgentCore",
    "AgentCoreApp",
    "BedrockAgentCoreApp",
    "BedrockAgentCoreContext",
    "PingStatus",
    "RequestContext",
]
