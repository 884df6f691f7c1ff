"""One agent, written as an official-SDK user writes it, for the differential test.

It imports the runtime from ``agent_runtime``: the SDK on one side, agentcore_sync
on the other (``tests/sdk_diff/*_side`` on ``PYTHONPATH``). Nothing here knows
which side it runs on; each payload's ``action`` picks one behaviour.
"""

import asyncio
import contextlib
import dataclasses
import os
import threading

from agent_runtime import (
    MIDDLEWARE,
    BedrockAgentCoreApp,
    BedrockAgentCoreContext,
)
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.websockets import WebSocketDisconnect

STATE = {"lifespan": "not entered", "ping": None}


@contextlib.asynccontextmanager
async def lifespan(app):
    STATE["lifespan"] = "entered"
    yield
    STATE["lifespan"] = "exited"


app = BedrockAgentCoreApp(debug=True, lifespan=lifespan, middleware=MIDDLEWARE)


class Order(BaseModel):
    id: int
    items: list[str]


@dataclasses.dataclass
class Point:
    x: int
    y: int


def numbers(count):
    for i in range(count):
        yield {"i": i}


async def async_numbers(count):
    for i in range(count):
        await asyncio.sleep(0)
        yield {"i": i}


def failing_stream():
    yield {"i": 0}
    raise RuntimeError("broke mid-stream")


def words():
    yield "alpha"
    yield "beta"


async def chunks():
    yield "one,"
    yield b"two"


@app.ping
def custom_status():
    return STATE["ping"]  # None: the automatic status


@app.entrypoint
def handler(payload, context):
    action = payload.get("action") if isinstance(payload, dict) else None
    if action == "echo":
        return payload
    if action == "list":
        return [1, "two", 3.5, None, True]
    if action == "text":
        return "plain text"
    if action == "none":
        return None
    if action == "number":
        return 42
    if action == "float":
        return 2.5
    if action == "bool":
        return False
    if action == "unicode":
        return {"name": "café ☕", "jp": "日本"}
    if action == "pydantic":
        return Order(id=7, items=["a", "b"])
    if action == "dataclass":
        return Point(1, 2)
    if action == "nested":
        return {"a": {"b": {"c": [1, {"d": None}]}}, "empty": {}, "list": []}
    if action == "raise":
        raise ValueError("handler failed")
    if action == "raise_key":
        return {}["missing"]
    if action == "stream":
        return numbers(3)
    if action == "async_stream":
        return async_numbers(3)
    if action == "stream_strings":
        return words()
    if action == "stream_fail":
        return failing_stream()
    if action == "stream_empty":
        return numbers(0)
    if action == "context":
        return {
            "session_id": context.session_id,
            "context_request_id": BedrockAgentCoreContext.get_request_id(),
            "context_session_id": BedrockAgentCoreContext.get_session_id(),
            "headers": context.request_headers,
        }
    if action == "identity":
        from bedrock_agentcore.runtime.context import BedrockAgentCoreContext as SDKContext

        return {
            "token": BedrockAgentCoreContext.get_workload_access_token(),
            "sdk_token": SDKContext.get_workload_access_token(),
            "callback": BedrockAgentCoreContext.get_oauth2_callback_url(),
            "sdk_request_id": SDKContext.get_request_id(),
            "sdk_session_id": SDKContext.get_session_id(),
        }
    if action == "bundle":
        ref = BedrockAgentCoreContext.get_config_bundle_ref()
        return (
            None if ref is None else {"bundle_arn": ref.bundle_arn, "version": ref.bundle_version}
        )
    if action == "add_task":
        return {"task_id": app.add_async_task(payload.get("name", "manual"))}
    if action == "complete_task":
        return {"completed": app.complete_async_task(payload["task_id"])}
    if action == "task_info":
        info = app.get_async_task_info()
        return {
            "active_count": info["active_count"],
            "names": [j["name"] for j in info["running_jobs"]],
        }
    if action == "set_ping":
        STATE["ping"] = payload.get("status")
        return {"ping": STATE["ping"]}
    if action == "status":
        return {"status": app.get_current_ping_status()}
    if action == "lifespan":
        return {"lifespan": STATE["lifespan"]}
    if action == "thread":
        seen = {}
        worker = threading.Thread(target=lambda: seen.update(pid=os.getpid()))
        worker.start()
        worker.join()
        return {"ran": "pid" in seen}
    if action == "json_404":
        return JSONResponse({"error": "not found", "id": 7}, status_code=404)
    if action == "plain_response":
        return PlainTextResponse("hello", headers={"X-Agent": "ported"})
    if action == "html_response":
        return HTMLResponse("<p>hi</p>", status_code=201)
    if action == "streaming_response":
        return StreamingResponse(chunks(), media_type="text/plain")
    if action == "http_exception":
        raise HTTPException(400, detail="bad thing")
    if action == "http_exception_headers":
        raise HTTPException(401, detail="who are you", headers={"WWW-Authenticate": "Bearer"})
    return {"unknown": action}


@app.websocket
async def ws_handler(websocket, context):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive_json()
            do = message.get("do")
            if do == "fail":
                raise RuntimeError("websocket handler failed")
            if do == "context":
                await websocket.send_json({"session_id": context.session_id})
            elif do == "bytes":
                await websocket.send_bytes(message["text"].encode())
            elif do == "text":
                await websocket.send_text(message["text"].upper())
            elif do == "close":
                await websocket.close(code=4000)
                return
            else:
                await websocket.send_json({"echo": message})
    except WebSocketDisconnect:
        pass


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")))
