"""A test agent that reads the request context the ways ported SDK code does.

The payload's ``action`` selects what is read: this runtime's
``BedrockAgentCoreContext``, the official SDK's own one, the SDK's identity
decorators and its outbound token forwarding (pointed, through the SDK's
endpoint variables, at a fake AWS the test runs), and a thread started with
``copy_request_context``. Served by gunicorn as ``context_app:app`` and
in-process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import boto3
from bedrock_agentcore.identity.auth import requires_api_key, requires_wat
from bedrock_agentcore.runtime import BedrockAgentCoreContext as SdkContext

from agentcore_sync import BedrockAgentCoreApp, BedrockAgentCoreContext, copy_request_context

app = BedrockAgentCoreApp()
log = logging.getLogger("context_app")


def seen() -> dict[str, Any]:
    """What both contexts say about the current request."""
    ref = SdkContext.get_config_bundle_ref()
    return {
        "request_id": BedrockAgentCoreContext.get_request_id(),
        "session_id": BedrockAgentCoreContext.get_session_id(),
        "token": BedrockAgentCoreContext.get_workload_access_token(),
        "headers": BedrockAgentCoreContext.get_request_headers(),
        "sdk_request_id": SdkContext.get_request_id(),
        "sdk_session_id": SdkContext.get_session_id(),
        "sdk_token": SdkContext.get_workload_access_token(),
        "sdk_callback_url": SdkContext.get_oauth2_callback_url(),
        "sdk_headers": SdkContext.get_request_headers(),
        "sdk_bundle": None if ref is None else [ref.bundle_arn, ref.bundle_version, ref.bundle_id],
    }


@requires_api_key(provider_name="test-provider")
def fetch_api_key(*, api_key: str) -> str:
    return api_key


@requires_wat()
def read_wat(*, identity_wat: str) -> str:
    return identity_wat


@app.async_task
def seen_in_a_thread_task() -> dict[str, Any]:
    return seen()


@app.async_task
async def seen_in_a_coroutine_task() -> dict[str, Any]:
    await asyncio.sleep(0)
    return seen()


def in_a_thread(copied: bool) -> dict[str, Any]:
    """``seen()`` from a thread the handler starts, with or without the request's context."""
    out: dict[str, Any] = {}

    def work() -> None:
        log.info("working in my own thread")
        out.update(seen())

    thread = threading.Thread(target=copy_request_context(work) if copied else work)
    thread.start()
    thread.join()
    return out


@app.entrypoint
def handler(payload: dict[str, Any], context: Any) -> Any:
    action = payload.get("action")
    if action == "seen":
        return {**seen(), "context_headers": context.request_headers}
    if action == "api_key":
        return {"api_key": fetch_api_key()}
    if action == "wat":
        return {"wat": read_wat()}
    if action == "forward":
        # The SDK's outbound forwarding: a data-plane client with its WAT hook.
        from bedrock_agentcore._utils.identity_propagation import (
            register_identity_wat_propagation,
        )

        client = boto3.client(
            "bedrock-agentcore",
            region_name=os.environ["AWS_REGION"],
            endpoint_url=os.environ["BEDROCK_AGENTCORE_DP_ENDPOINT"],
        )
        register_identity_wat_propagation(client)
        client.invoke_agent_runtime(
            agentRuntimeArn="arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/other",
            payload=b"{}",
        )
        return {"forwarded": True}
    if action == "thread":
        return in_a_thread(copied=bool(payload.get("copied", True)))
    if action == "tasks":
        started = seen_in_a_thread_task.start()
        submitted = app.submit(seen)
        coroutine = seen_in_a_coroutine_task.start()
        return {
            "start": started.result(timeout=10),
            "submit": submitted.result(timeout=10),
            "coroutine": coroutine.result(timeout=10),
        }
    if action == "bundle_ref":
        ref = BedrockAgentCoreContext.get_config_bundle_ref()
        return {"ref": None if ref is None else [ref.bundle_arn, ref.bundle_version, ref.bundle_id]}
    raise ValueError(f"unknown action {action!r}")


if __name__ == "__main__":
    app.run()
