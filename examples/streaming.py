"""Streaming: a generator handler answers with Server-Sent Events, one per item.

Each item is sent as soon as it is produced; the agent is HealthyBusy while the
stream runs (the generator is an ``@async_task``), and the task ends when the
client has read everything or gone away.

    python examples/streaming.py
    curl -sN localhost:8080/invocations -d '{"words": 5}'
"""

import asyncio

from agentcore_sync import BedrockAgentCoreApp

app = BedrockAgentCoreApp()


@app.async_task
async def words(count: int, delay: float):
    for i in range(count):
        await asyncio.sleep(delay)
        yield {"word": f"word-{i}", "index": i}


@app.entrypoint
def main(payload):
    return words(int(payload.get("words", 5)), float(payload.get("delay", 0.5)))


if __name__ == "__main__":
    app.run()
