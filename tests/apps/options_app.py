"""An agent for the tests of the constructor options: lifespan, middleware, busy, keep-alive.

``OPTIONS_LIFESPAN`` picks the lifespan: ``async`` (an ``@asynccontextmanager``
function, the official SDK's form), ``sync`` (a ``@contextmanager`` function),
``fail`` (raises on entry), or none. It appends ``enter PID THREAD`` and
``exit PID`` lines to the file ``$OPTIONS_EVENTS``. Two WSGI middlewares,
``first`` then ``second`` in the list, add ``X-Seen-By-First`` and
``X-Seen-By-Second`` headers listing who had seen the request by then.
Payloads: ``{"sleep": s}`` answers after ``s`` seconds; ``{"stream": [a, b],
"gap": s}`` streams ``a``, waits ``s`` seconds, streams ``b``; any other
payload gets what the handler saw (lifespan, middleware order, event loop).
``python options_app.py`` serves it with ``app.run()`` on ``$PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from agentcore_sync import BedrockAgentCoreApp

STATE: dict[str, Any] = {"entered": False}


def note(line: str) -> None:
    path = os.environ.get("OPTIONS_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as events:
            events.write(line + "\n")


@contextlib.asynccontextmanager
async def async_lifespan(app: BedrockAgentCoreApp) -> AsyncIterator[None]:
    assert isinstance(app, BedrockAgentCoreApp)
    STATE["loop"] = asyncio.get_running_loop()
    await asyncio.sleep(0.2)  # entry takes a while: nothing is served meanwhile
    STATE["entered"] = True
    note(f"enter {os.getpid()} {threading.current_thread().name}")
    yield
    note(f"exit {os.getpid()}")


@contextlib.contextmanager
def sync_lifespan(app: BedrockAgentCoreApp) -> Iterator[None]:
    time.sleep(0.2)
    STATE["entered"] = True
    note(f"enter {os.getpid()} {threading.current_thread().name}")
    yield
    note(f"exit {os.getpid()}")


@contextlib.asynccontextmanager
async def failing_lifespan(app: BedrockAgentCoreApp) -> AsyncIterator[None]:
    raise RuntimeError("the database is unreachable")
    yield  # an async generator: unreachable


def marking(name: str) -> Callable[[Any], Any]:
    """WSGI middleware that notes, in the request and its answer, who had seen it."""

    def middleware(wsgi_app: Any) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> Any:
            seen = environ.setdefault("options.seen", [])
            seen.append(name)
            mark = ("X-Seen-By-" + name.title(), ",".join(seen))

            def marked(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                return start_response(status, [*headers, mark], *exc)

            return wsgi_app(environ, marked)

        return app

    return middleware


LIFESPANS = {"async": async_lifespan, "sync": sync_lifespan, "fail": failing_lifespan}
app = BedrockAgentCoreApp(
    lifespan=LIFESPANS.get(os.environ.get("OPTIONS_LIFESPAN", "")),
    middleware=[marking("first"), marking("second")],
)


@app.entrypoint
async def main(payload: Any, context: Any) -> Any:
    if isinstance(payload, dict) and "sleep" in payload:
        await asyncio.sleep(float(payload["sleep"]))
        return {"slept": payload["sleep"]}
    if isinstance(payload, dict) and "stream" in payload:
        return stream(payload["stream"], float(payload.get("gap", 0)))
    return {
        "entered": STATE["entered"],
        "on_lifespan_loop": STATE.get("loop") is asyncio.get_running_loop(),
        "seen": context.request.environ.get("options.seen"),
    }


async def stream(items: list[Any], gap: float) -> AsyncIterator[Any]:
    for index, item in enumerate(items):
        if index:
            await asyncio.sleep(gap)
        yield item


if __name__ == "__main__":
    app.run()
