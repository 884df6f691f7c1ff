"""A custom ``@app.ping``: report HealthyBusy while an external dependency is overloaded.

The ping-status guide's use case 3: throttle new work while a downstream system
struggles, and otherwise fall back to the automatic status (busy while tasks run).

    python examples/custom_ping.py
    curl -s localhost:8080/invocations -d '{"action": "throttle", "on": true}'
    curl -s localhost:8080/ping          # HealthyBusy
"""

import threading

from agentcore_sync import BedrockAgentCoreApp, PingStatus

app = BedrockAgentCoreApp()

# Stands in for a real check (a throttling counter, a health probe of a dependency).
_throttled = threading.Event()


@app.ping
def check_dependencies():
    if _throttled.is_set():
        return PingStatus.HEALTHY_BUSY
    # The automatic rule, as the guide writes it.
    return PingStatus.HEALTHY_BUSY if app._active_tasks else PingStatus.HEALTHY


@app.entrypoint
def main(payload):
    if payload.get("action") == "throttle":
        if payload.get("on"):
            _throttled.set()
        else:
            _throttled.clear()
    return {"ping_status": app.get_current_ping_status().value}


if __name__ == "__main__":
    app.run()
