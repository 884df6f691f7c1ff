"""The Amazon Bedrock AgentCore Runtime contract on Flask, gunicorn, waitress and threads.

Code written for the official SDK runs after replacing the import
``bedrock_agentcore.runtime`` with ``agentcore_sync``.
"""

from .core.context import BedrockAgentCoreContext, RequestContext, copy_request_context
from .core.handles import TaskHandle
from .core.lifespan import LifespanFailed
from .models import ConfigBundleRef, PingStatus
from .web.agent import AgentCore
from .web.app import AgentCoreApp, BedrockAgentCoreApp
from .web.websocket import SyncWebSocket, WebSocket, WebSocketDisconnect

__all__ = [
    "AgentCore",
    "AgentCoreApp",
    "BedrockAgentCoreApp",
    "BedrockAgentCoreContext",
    "ConfigBundleRef",
    "LifespanFailed",
    "PingStatus",
    "RequestContext",
    "SyncWebSocket",
    "TaskHandle",
    "WebSocket",
    "WebSocketDisconnect",
    "copy_request_context",
]
