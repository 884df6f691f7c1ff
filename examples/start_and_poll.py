"""Start-and-poll: answer at once with a task id, let the client poll for the result.

The pattern of the AgentCore async-agents architecture: the first invocation
starts an N-second task and returns its id; later invocations, in the same
session, ask for the result, which lives in the result store and so survives
this process (``AGENTCORE_SYNC_RESULT_STORE=redis://...`` shares it further).

    python examples/start_and_poll.py
    curl -s localhost:8080/invocations -d '{"action": "start", "seconds": 5}'
    curl -s localhost:8080/invocations -d '{"action": "result", "task_id": <id>}'
"""

import time

from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


@app.async_task
def long_job(seconds: float, fail: bool = False) -> str:
    """Stand-in for real work: the agent is HealthyBusy until it returns."""
    time.sleep(seconds)
    if fail:
        raise RuntimeError(f"Task failed after {seconds}s")
    return f"Task completed after {seconds}s"


@app.entrypoint
def main(payload):
    action = payload.get("action")
    if action == "start":
        seconds = float(payload.get("seconds", 5))
        handle = long_job.start(seconds, fail=bool(payload.get("fail", False)))
        return {
            "task_id": handle.task_id,
            "status": "started",
            "message": f"Task {handle.task_id} started. Poll with "
            f'{{"action": "result", "task_id": {handle.task_id}}}',
        }
    if action == "result":
        record = app.get_task_result(payload.get("task_id"))
        if record is None:
            return {"status": "not found", "task_id": payload.get("task_id")}
        if record["status"] in ("queued", "running"):
            return {"status": "still running", "task_id": record["task_id"]}
        return record
    return {"usage": ['{"action": "start", "seconds": 5}', '{"action": "result", "task_id": 1}']}


if __name__ == "__main__":
    app.run()
