"""The same agent on the official SDK (`bedrock-agentcore`), served by uvicorn via `run()`.

The entrypoint is a plain function, as in the SDK's examples, so it runs in the
SDK's thread pool. With ``BENCH_HANDLER=async`` it is a coroutine function
instead, which runs on the SDK's worker event loop: that is where
``{"spawn": n, "sleep": s}`` creates its tasks (figures 6, 7), the SDK's way to
start background coroutines.
"""

import argparse
import asyncio
import os
import time

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()
_background = set()  # asyncio keeps only weak references to tasks


@app.async_task
async def sleeper(seconds):
    await asyncio.sleep(seconds)


async def spawn(count, seconds):
    started = time.perf_counter()
    for _ in range(count):
        task = asyncio.create_task(sleeper(seconds))
        _background.add(task)
        task.add_done_callback(_background.discard)
    # Each task registers itself on its first step; they all run before this
    # coroutine resumes, since the loop runs ready callbacks in order.
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    active = app.get_async_task_info()["active_count"]
    return {"started": count, "active": active, "elapsed": elapsed}


def invoke(payload):
    if isinstance(payload, dict) and "sleep" in payload:
        time.sleep(float(payload["sleep"]))
        return {"slept": payload["sleep"]}
    return payload


async def invoke_async(payload):
    if isinstance(payload, dict):
        if "spawn" in payload:
            return await spawn(int(payload["spawn"]), float(payload.get("sleep", 1.0)))
        if "sleep" in payload:
            await asyncio.sleep(float(payload["sleep"]))
            return {"slept": payload["sleep"]}
    return payload


app.entrypoint(invoke_async if os.environ.get("BENCH_HANDLER") == "async" else invoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, help="ignored: uvicorn runs one event loop")
    args = parser.parse_args()
    app.run(host="127.0.0.1", port=args.port)
