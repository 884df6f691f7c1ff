"""The simple agent of the AgentCore async-processing guide, on agentcore_sync.

Actions: ``process`` (a long task that keeps the agent HealthyBusy), ``cleanup``
(a shorter one), ``status`` (the ping status and the tasks running). The task
lengths default to the guide's 30 s and 10 s; ``SIMPLE_AGENT_PROCESS_SECONDS``
and ``SIMPLE_AGENT_CLEANUP_SECONDS`` change them.

    python examples/simple_agent.py      # serves on 127.0.0.1:8080
"""

import asyncio
import logging
import os
from datetime import datetime

from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()
log = logging.getLogger("simple_agent")

PROCESS_SECONDS = float(os.environ.get("SIMPLE_AGENT_PROCESS_SECONDS", "30"))
CLEANUP_SECONDS = float(os.environ.get("SIMPLE_AGENT_CLEANUP_SECONDS", "10"))


@app.async_task
async def process_data(data_id: str) -> str:
    """Long-running work: the status is HealthyBusy while it runs."""
    log.info("[%s] Processing data: %s", datetime.now(), data_id)
    await asyncio.sleep(PROCESS_SECONDS)
    log.info("[%s] Completed processing: %s", datetime.now(), data_id)
    return f"Processed {data_id}"


@app.async_task
async def cleanup_task() -> str:
    """Another background task that also keeps the agent busy."""
    log.info("[%s] Starting cleanup...", datetime.now())
    await asyncio.sleep(CLEANUP_SECONDS)
    log.info("[%s] Cleanup completed", datetime.now())
    return "Cleanup done"


@app.entrypoint
async def handler(event):
    """Main handler: runs the tasks, or reports on them."""
    action = event.get("action", "info") if isinstance(event, dict) else "info"

    if action == "process":
        data_id = event.get("data_id", "default_data")
        await process_data(data_id)
        return {"message": f"Processing {data_id}", "status": "completed"}

    if action == "cleanup":
        await cleanup_task()
        return {"message": "Cleanup completed"}

    if action == "status":
        task_info = app.get_async_task_info()
        return {
            "ping_status": app.get_current_ping_status().value,
            "active_tasks": task_info["active_count"],
            "running_jobs": task_info["running_jobs"],
        }

    return {
        "message": "Simple agent on agentcore_sync",
        "available_actions": ["process", "cleanup", "status"],
        "usage": "Send {'action': 'process', 'data_id': 'my_data'}",
    }


if __name__ == "__main__":
    app.run()
