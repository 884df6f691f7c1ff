"""Pings a server every 50 ms from a process of its own; one JSON line per ping.

``python ping_monitor.py URL`` runs until its standard input closes. Each line
is ``{"elapsed": seconds, "failure": null or why}``. A monitor thread inside a
test that loads the server from 64 threads of its own measures, above all, how
long it waits for its own process's GIL: 0.9-1.3 s at worst there, while this
process saw the same server answer within 0.08-0.19 s. Here it measures the server.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from soak import Client

INTERVAL = 0.05


def main(url: str) -> None:
    stop = threading.Event()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    client = Client(url, timeout=5)
    while not stop.wait(INTERVAL):
        started = time.perf_counter()
        failure = None
        try:
            answer = client.ping()
            if answer.status != 200 or answer.json()["status"] not in ("Healthy", "HealthyBusy"):
                failure = f"/ping answered {answer.status} {answer.body!r}"
        except Exception as exc:
            failure = f"/ping failed: {type(exc).__name__}: {exc}"
            client.close()
        elapsed = time.perf_counter() - started
        print(json.dumps({"elapsed": elapsed, "failure": failure}), flush=True)
    client.close()


if __name__ == "__main__":
    main(sys.argv[1])
