"""The official SDK's own request context, filled when the SDK is installed.

Code written for the official SDK reads the request from the SDK's
``BedrockAgentCoreContext``: its identity decorators (``@requires_access_token``,
``@requires_api_key``, ``@requires_wat``) take the workload access token from
there, and without one they create a local workload identity instead. So each
request served here also fills the SDK's context variables, through the SDK's
public setters, in the same context as ours: whatever copies the request's
context (the event loop, background tasks, streams, ``copy_request_context``)
carries both.

The SDK is imported once, on the first request, and only when it is installed:
it pulls in Starlette, pydantic and boto3, which an agent without it must not
pay for (``importlib.util.find_spec`` looks without importing).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

from ..models import ConfigBundleRef
from .bundles import Baggage, bundle_config

logger = logging.getLogger("agentcore_sync.context")


class OfficialContext:
    """The SDK's ``BedrockAgentCoreContext``, written through its public setters."""

    def __init__(self, context: Any, bundle_ref_type: type) -> None:
        self.context = context
        self._bundle_ref_type = bundle_ref_type
        # Private to the SDK, so used only where present: the hook its
        # get_config_bundle() calls for the current request's configuration.
        self._set_loader = getattr(context, "_set_bundle_loader", None)
        self._clear_loader = getattr(context, "_clear_bundle_loader", None)

    def fill(
        self,
        request_id: str,
        session_id: str | None,
        token: str | None,
        callback_url: str | None,
        headers: dict[str, str] | None,
        baggage: Baggage,
    ) -> None:
        """Set every variable of a request, absent ones to None, as its app does."""
        context = self.context
        context.set_request_context(request_id, session_id)
        context.set_workload_access_token(token)
        context.set_oauth2_callback_url(callback_url)
        context.set_request_headers(headers)
        context.set_routing_experiment(baggage.experiment_arn, baggage.experiment_variant)
        self.set_config_bundle_ref(baggage.bundle_ref)

    def set_config_bundle_ref(self, ref: ConfigBundleRef | None) -> None:
        """The SDK's reference (its own type) and its configuration loader."""
        if ref is None:
            self.context.set_config_bundle_ref(None)
            if self._clear_loader is not None:
                self._clear_loader()
            return
        official = self._bundle_ref_type(ref.bundle_arn, ref.bundle_version)
        self.context.set_config_bundle_ref(official)
        if self._set_loader is not None:
            self._set_loader(fetcher=lambda: bundle_config(ref))

    def set(self, name: str, *args: Any) -> None:
        """Call the SDK's setter ``name``, when this version of the SDK has it."""
        setter = getattr(self.context, name, None)
        if setter is not None:
            setter(*args)


_UNRESOLVED = object()
# Guards the one-time lookup below: _official goes from _UNRESOLVED to an
# OfficialContext or None exactly once, under the lock, and is only read after.
_lock = threading.Lock()
_official: Any = _UNRESOLVED


def official_context() -> OfficialContext | None:
    """The SDK's context when ``bedrock_agentcore`` is installed, else None."""
    global _official
    official = _official
    if official is _UNRESOLVED:
        with _lock:
            if _official is _UNRESOLVED:
                _official = _load()
            official = _official
    return official


def _load() -> OfficialContext | None:
    try:
        spec = importlib.util.find_spec("bedrock_agentcore")
    except (ImportError, ValueError):  # a broken install, or an import blocked in sys.modules
        spec = None
    if spec is None:
        return None
    try:
        from bedrock_agentcore.config_bundle.bundle import ConfigBundleRef as OfficialRef
        from bedrock_agentcore.runtime.context import BedrockAgentCoreContext
    except Exception as exc:
        logger.warning(
            "bedrock_agentcore is installed but cannot be imported (%s: %s): "
            "its BedrockAgentCoreContext is not filled",
            type(exc).__name__,
            exc,
        )
        return None
    return OfficialContext(BedrockAgentCoreContext, OfficialRef)
