"""A handler written for the official SDK, answering with Starlette objects.

The payload's ``kind`` picks the response it returns (or the ``HTTPException``
it raises). With ``PORTED_APP_SDK=1`` the official SDK's app serves it, so that
the same file shows what the SDK sends on uvicorn; otherwise this runtime does.
A stream waits, after its first chunk, for the file named by ``gate`` to
exist, so that a test sees the first chunk arrive before the rest is made.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

if os.environ.get("PORTED_APP_SDK") == "1":
    from bedrock_agentcore.runtime import BedrockAgentCoreApp
else:
    from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()

#: How long a stream waits for its gate before it gives up and says so.
GATE_TIMEOUT = 30.0


def _gate_open(gate: str) -> bool:
    deadline = time.monotonic() + GATE_TIMEOUT
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _sync_chunks(gate: str) -> Any:
    yield "first chunk\n"
    yield b"then " if _gate_open(gate) else b"gate timed out "
    yield "the rest: caf\u00e9\n"


async def _async_chunks(gate: str) -> Any:
    yield "data: first\n\n"
    opened = await asyncio.to_thread(_gate_open, gate)
    yield b"data: then\n\n" if opened else b"data: gate timed out\n\n"
    yield "data: done\n\n"


class TwoPartResponse(Response):
    """A response of the user's own, sending its body in two messages."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"x-parts", b"2")]
        await send({"type": "http.response.start", "status": 207, "headers": headers})
        await send({"type": "http.response.body", "body": b"part one, ", "more_body": True})
        await send({"type": "http.response.body", "body": b"part two"})


async def _endless(marker: str) -> Any:
    try:
        while True:
            yield "tick\n"
            await asyncio.sleep(0.01)
    finally:
        Path(marker).write_text("closed")


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


@app.entrypoint
def handler(payload: dict[str, Any]) -> Any:
    kind = payload.get("kind")
    if kind == "json_404":
        return JSONResponse(
            {"error": "not found", "id": payload.get("id"), "name": "caf\u00e9"},
            status_code=404,
            headers={"X-Agent": "ported"},
        )
    if kind == "plain":
        response = PlainTextResponse("hello caf\u00e9", headers={"X-Agent": "ported"})
        response.set_cookie("session", "abc", httponly=True)
        response.set_cookie("theme", "dark", max_age=60)
        return response
    if kind == "html":
        return HTMLResponse("<p>hello</p>", status_code=201)
    if kind == "bare":
        return Response(b"\x00\x01raw", headers={"X-Agent": "ported"})
    if kind == "typed":
        return Response("a,b\n1,2\n", media_type="text/csv")
    if kind == "no_content":
        return Response(status_code=204)
    if kind == "redirect":
        return RedirectResponse("/elsewhere?q=a b", status_code=302)
    if kind == "stream_sync":
        return StreamingResponse(_sync_chunks(payload["gate"]), media_type="text/plain")
    if kind == "stream_async":
        return StreamingResponse(
            _async_chunks(payload["gate"]),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Agent": "ported"},
        )
    if kind == "stream_endless":
        return StreamingResponse(_endless(payload["marker"]), media_type="text/plain")
    if kind == "background":
        return JSONResponse({"ok": True}, background=BackgroundTask(_write, payload["path"], "ran"))
    if kind == "file":
        return FileResponse(__file__)
    if kind == "missing_file":
        return FileResponse("/nonexistent/report.csv")
    if kind == "own_call":
        return TwoPartResponse()
    if kind == "http_400":
        raise HTTPException(400, detail="bad thing", headers={"X-Reason": "bad"})
    if kind == "http_default":
        raise HTTPException(503)
    if kind == "http_detail_object":
        raise HTTPException(422, detail={"field": "name", "problem": "missing"})
    return {"kind": kind}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "8080")))
