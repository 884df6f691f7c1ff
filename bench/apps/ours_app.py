"""The agent under test: agentcore_sync, served by waitress (`run()`) or gunicorn.

Payloads: any JSON is echoed back; ``{"sleep": s}`` holds the request for ``s``
seconds (figure 3); ``{"spawn": n, "sleep": s}`` starts ``n`` background coroutine
tasks that each sleep ``s`` seconds and answers once all are registered (figures 6, 7).
"""

import argparse
import asyncio
import time

from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


@app.async_task
async def sleeper(seconds):
    await asyncio.sleep(seconds)


def spawn(count, seconds):
    started = time.perf_counter()
    for _ in range(count):
        sleeper.start(seconds)
    elapsed = time.perf_counter() - started
    active = app.get_async_task_info()["active_count"]
    return {"started": count, "active": active, "elapsed": elapsed}


@app.entrypoint
def invoke(payload):
    if isinstance(payload, dict):
        if "spawn" in payload:
            return spawn(int(payload["spawn"]), float(payload.get("sleep", 1.0)))
        if "sleep" in payload:
            time.sleep(float(payload["sleep"]))
            return {"slept": payload["sleep"]}
    return payload


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    app.run(host="127.0.0.1", port=args.port, threads=args.threads)
