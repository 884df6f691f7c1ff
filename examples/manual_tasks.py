"""Manual task tracking: ``add_async_task`` / ``complete_async_task`` with threads.

For work whose start and end you want to control, and to record the ping
status at those points — as the ping-status guide's stuck-session detection
does: a completion event that still says ``HealthyBusy`` means the session is
stuck and should be stopped.

    python examples/manual_tasks.py
    curl -s localhost:8080/invocations -d '{"action": "start", "seconds": 3}'
    curl -s localhost:8080/invocations -d '{"action": "events"}'
"""

import logging
import threading
import time

from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()
log = logging.getLogger("manual_tasks")

# The journal stands in for the DynamoDB table of the guide.
_journal_lock = threading.Lock()
_journal: list[dict] = []


def record_event(task_id: int, status: str, ping_status: str) -> None:
    event = {"task_id": task_id, "status": status, "ping_status": ping_status, "at": time.time()}
    with _journal_lock:
        _journal.append(event)
    log.info("Task %s %s; ping status now %s", task_id, status, ping_status)


def background_work(task_id: int, seconds: float, fail: bool) -> None:
    try:
        time.sleep(seconds)
        if fail:
            raise RuntimeError("simulated failure")
        app.complete_async_task(task_id)  # complete first, so the recorded status is accurate
        record_event(task_id, "COMPLETED", app.get_current_ping_status().value)
    except Exception:
        log.exception("Task %s failed", task_id)
        app.complete_async_task(task_id)
        record_event(task_id, "FAILED", app.get_current_ping_status().value)
    finally:
        app.complete_async_task(task_id)  # the safety net: a second call only logs a warning


@app.entrypoint
def main(payload):
    action = payload.get("action")
    if action == "start":
        seconds = float(payload.get("seconds", 3))
        task_id = app.add_async_task("manual_work", {"seconds": seconds})
        record_event(task_id, "STARTED", app.get_current_ping_status().value)
        threading.Thread(
            target=background_work,
            args=(task_id, seconds, bool(payload.get("fail", False))),
            daemon=True,
        ).start()
        return {"task_id": task_id, "status": "started"}
    if action == "events":
        with _journal_lock:
            return {"events": list(_journal), "active": app.get_async_task_info()}
    return {"usage": ['{"action": "start", "seconds": 3}', '{"action": "events"}']}


if __name__ == "__main__":
    app.run()
