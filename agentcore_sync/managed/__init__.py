"""The managed runtime, played on this machine.

What AgentCore Runtime does to an agent, apart from the agent: the session
lifecycle (``lifecycle``, no I/O), a poll of an agent as its pings see it
(``probe``), and ``Emulator``, a local stand-in for the service that boto3's
``bedrock-agentcore`` client can call (``emulator``, ``dataplane``,
``microvm``). ``agentcore-sync monitor`` and ``agentcore-sync emulate`` are
built on it.
"""

from .emulator import Emulator, SessionState, SessionSummary
from .microvm import Server

__all__ = ["Emulator", "Server", "SessionState", "SessionSummary"]
