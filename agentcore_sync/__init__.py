"""The Amazon Bedrock AgentCore Runtime contract on Flask, gunicorn, waitress and threads.

Code written for the official SDK runs after replacing the import
``bedrock_agentcore.runtime`` with ``agentcore_sync``.

The names below are imported when first used (PEP 562): a process that imports
only a part of the package (gunicorn's arbiter reading
``agentcore_sync.servers.gunicorn_config``, the ``invoke`` command) does not
pay for Flask and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.context import BedrockAgentCoreContext, RequestContext, copy_request_context
    from .core.handles import TaskHandle
    from .core.lifespan import LifespanFailed
    from .models import ConfigBundleRef, PingStatus
    from .web.agent import AgentCore
    from .web.app import AgentCoreApp, BedrockAgentCoreApp
    from .web.websocket import SyncWebSocket, WebSocket, WebSocketDisconnect

#: Where each public name is defined.
_HOMES = {
    "AgentCore": ".web.agent",
    "AgentCoreApp": ".web.app",
    "BedrockAgentCoreApp": ".web.app",
    "BedrockAgentCoreContext": ".core.context",
    "ConfigBundleRef": ".models",
    "LifespanFailed": ".core.lifespan",
    "PingStatus": ".models",
    "RequestContext": ".core.context",
    "SyncWebSocket": ".web.websocket",
    "TaskHandle": ".core.handles",
    "WebSocket": ".web.websocket",
    "WebSocketDisconnect": ".web.websocket",
    "copy_request_context": ".core.context",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once: later lookups find it here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
