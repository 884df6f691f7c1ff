"""The agent the emulator tests run as sessions (tests/test_emulator.py).

Payloads: ``{}`` answers the process's pid and home; ``{"hold": s}`` starts a
background task of ``s`` seconds (HealthyBusy meanwhile); ``{"write": text}``
writes ``note.txt`` in the home; ``{"read": true}`` answers what it holds, or
null; ``{"stream": n, "gap": s}`` streams ``n`` events ``s`` seconds apart.
"""

import os
import time

from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()
NOTE = os.path.join(os.path.expanduser("~"), "note.txt")


@app.async_task
def hold(seconds: float) -> None:
    time.sleep(seconds)


@app.entrypoint
def main(payload):
    if "hold" in payload:
        hold.start(float(payload["hold"]))
    if "write" in payload:
        with open(NOTE, "w") as note:
            note.write(payload["write"])
    if "stream" in payload:
        gap = float(payload.get("gap", 0.4))

        def events():
            for number in range(int(payload["stream"])):
                yield {"event": number, "at": time.time()}
                time.sleep(gap)

        return events()
    note = None
    if payload.get("read") and os.path.exists(NOTE):
        with open(NOTE) as file:
            note = file.read()
    return {"pid": os.getpid(), "home": os.path.expanduser("~"), "note": note}
