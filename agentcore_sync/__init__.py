"""The Amazon Bedrock AgentCore Runtime contract on Flask, gunicorn, waitress and threads.

Code written for the official SDK runs after replacing the import
``bedrock_agentcore.runtime`` with ``agentcore_sync``.
"""

from .core.context import BedrockAgentCoreContext, RequestContext
from .core.handles import TaskHandle
from .core.lifespan import LifespanFailed
from .models import PingStatus
from .web.agent import AgentCore
from .web.app import AgentCoreApp, BedrockAgentCoreApp

__all__ = [
    "AgentCore",
    "AgentCoreApp",
    "BedrockAgentCoreApp",
    "BedrockAgentCoreContext",
    "LifespanFailed",
    "PingStatus",
    "RequestContext",
    "TaskHandle",
]
