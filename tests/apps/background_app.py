"""A test agent for background work: start thread or coroutine jobs, poll their records."""

import asyncio
import os
import time

from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


@app.async_task
def job(seconds: float = 0.0, fail: bool = False, value=None):
    time.sleep(seconds)
    if fail:
        raise RuntimeError("job failed on purpose")
    return {"value": value, "slept": seconds}


@app.async_task
async def coro_job(seconds: float = 0.0, value=None):
    await asyncio.sleep(seconds)
    return {"value": value}


@app.entrypoint
def main(payload):
    action = payload["action"]
    if action == "start":
        task = coro_job if payload.get("coro") else job
        kwargs = {k: payload[k] for k in ("seconds", "fail", "value") if k in payload}
        if payload.get("coro"):
            kwargs.pop("fail", None)
        return {"task_id": task.start(**kwargs).task_id}
    if action == "result":
        return {"record": app.get_task_result(payload["task_id"])}
    if action == "info":
        return app.get_async_task_info()
    if action == "pid":
        return {"pid": os.getpid()}
    if action == "sleep":
        time.sleep(payload["seconds"])
        return {"slept": payload["seconds"], "pid": os.getpid()}
    raise ValueError(f"unknown action {action!r}")


if __name__ == "__main__":
    app.run(threads=int(os.environ.get("BACKGROUND_APP_THREADS", "16")))
