"""A test agent with a ``/ws`` handler, as the official SDK's docs write one.

``WS_HANDLER=sync`` registers a plain-function handler instead of the coroutine
one; both do the same, chosen by the ``do`` query parameter. ``WS_RECORD`` is a
file where a handler writes what it saw when its client left.
``WS_MAX_INVOCATIONS`` sets the invocation bound (admission control).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

from starlette.websockets import WebSocketDisconnect  # what the SDK's handlers catch

from agentcore_sync import BedrockAgentCoreApp
from agentcore_sync.core.context import BedrockAgentCoreContext

limit = os.environ.get("WS_MAX_INVOCATIONS")
app = BedrockAgentCoreApp(max_concurrent_invocations=int(limit) if limit else None)


@app.entrypoint
def invoke(payload: Any) -> Any:
    return {"invoked": payload}


def _record(disconnect: WebSocketDisconnect) -> None:
    with open(os.environ["WS_RECORD"], "w") as out:
        json.dump({"code": disconnect.code, "class": type(disconnect).__name__}, out)


def _context_of(context: Any) -> dict[str, Any]:
    return {
        "session_id": context.session_id,
        "request_id": context.request_id,
        "headers": context.request_headers,
        "current_request_id": BedrockAgentCoreContext.get_request_id(),
    }


if os.environ.get("WS_HANDLER") == "sync":

    @app.websocket
    def handler(websocket: Any, context: Any) -> None:
        do = websocket.query_params.get("do", "text")
        if do == "fail_before_accept":
            raise ValueError("refused before accepting")
        if do == "reject":
            websocket.close()
            return
        websocket.accept()
        try:
            if do == "text":
                for text in websocket.iter_text():
                    websocket.send_text(text.upper())
            elif do == "json":
                while True:
                    websocket.send_json({"echo": websocket.receive_json(), "sync": True})
            elif do == "bytes":
                while True:
                    websocket.send_bytes(websocket.receive_bytes()[::-1])
            elif do == "context":
                websocket.send_json(_context_of(context))
                websocket.close()
            elif do == "fail":
                websocket.receive_text()
                raise RuntimeError("the handler failed")
            elif do == "hold":
                websocket.send_text("held")
                websocket.receive_text()
            elif do == "duplex":
                # Sends from another thread while this one waits for a message.
                pump = threading.Thread(
                    target=lambda: [websocket.send_json({"tick": i}) for i in range(3)]
                )
                pump.start()
                text = websocket.receive_text()
                pump.join()
                websocket.send_text(f"got {text}")
        except WebSocketDisconnect as disconnect:
            if do in ("hold", "json"):
                _record(disconnect)

else:

    @app.websocket
    async def handler(websocket: Any, context: Any) -> None:
        do = websocket.query_params.get("do", "text")
        if do == "fail_before_accept":
            raise ValueError("refused before accepting")
        if do == "reject":
            await websocket.close()
            return
        await websocket.accept()
        try:
            if do == "text":
                async for text in websocket.iter_text():
                    await websocket.send_text(text.upper())
            elif do == "json":
                while True:
                    await websocket.send_json({"echo": await websocket.receive_json()})
            elif do == "bytes":
                while True:
                    await websocket.send_bytes((await websocket.receive_bytes())[::-1])
            elif do == "context":
                await websocket.send_json(_context_of(context))
                await websocket.close()
            elif do == "fail":
                await websocket.receive_text()
                raise RuntimeError("the handler failed")
            elif do == "hold":
                await websocket.send_text("held")
                await websocket.receive_text()
            elif do == "duplex":
                # A task sends while the handler waits for a message, as voice agents do.
                async def pump() -> None:
                    for i in range(3):
                        await websocket.send_json({"tick": i})

                task = asyncio.create_task(pump())
                text = await websocket.receive_text()
                await task
                await websocket.send_text(f"got {text}")
        except WebSocketDisconnect as disconnect:
            if do in ("hold", "json"):
                _record(disconnect)


if __name__ == "__main__":
    app.run()
