"""HTTP from the harness: /ping latency probes, long invocations, memory sampling.

The prober is open-loop, like a health checker: it sends a /ping on a fixed
schedule whatever the earlier ones are doing, and measures each latency from the
moment the probe was due, so a stalled server cannot hide its stall by slowing
the prober down.
"""

import http.client
import json
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


def request(host, port, method, path, body=None, timeout=30.0):
    """One request on a fresh connection: (status, parsed JSON body or None)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None
    finally:
        conn.close()


def warm_up(host, port, payload, count=50):
    """A few requests on one keep-alive connection, so imports and caches are warm."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    body = json.dumps(payload).encode()
    try:
        for _ in range(count):
            conn.request("GET", "/ping")
            conn.getresponse().read()
            conn.request(
                "POST", "/invocations", body=body, headers={"Content-Type": "application/json"}
            )
            conn.getresponse().read()
    finally:
        conn.close()


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class ProbeResult:
    latencies: list[float] = field(default_factory=list)  # seconds
    failures: int = 0  # timed out, refused, or not 200

    def summary_ms(self):
        return {
            "p50_ms": percentile(self.latencies, 50) * 1000,
            "p99_ms": percentile(self.latencies, 99) * 1000,
        }


class PingProber:
    """Probe GET /ping every `interval` seconds for `window` seconds, in a background thread."""

    def __init__(self, host, port, *, window, interval, timeout):
        self.host, self.port = host, port
        self.window, self.interval, self.timeout = window, interval, timeout
        self.result = ProbeResult()
        self._thread = threading.Thread(target=self._run, name="ping-prober", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def join(self) -> ProbeResult:
        self._thread.join()
        return self.result

    def _once(self, due):
        try:
            status, body = request(self.host, self.port, "GET", "/ping", timeout=self.timeout)
            ok = status == 200 and isinstance(body, dict) and "status" in body
        except (OSError, http.client.HTTPException):
            ok = False
        return time.perf_counter() - due, ok

    def _run(self):
        count = max(1, round(self.window / self.interval))
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=64, thread_name_prefix="ping") as pool:
            futures = []
            for i in range(count):
                due = start + i * self.interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self._once, due))
            for future in futures:
                latency, ok = future.result()
                self.result.latencies.append(latency)
                self.result.failures += not ok


class LongInvocations:
    """`count` concurrent POST /invocations {"sleep": seconds}, one thread each."""

    def __init__(self, host, port, *, count, seconds, timeout):
        self.statuses = Counter()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._one, args=(host, port, seconds, timeout), daemon=True)
            for _ in range(count)
        ]

    def _one(self, host, port, seconds, timeout):
        try:
            status, _ = request(host, port, "POST", "/invocations", {"sleep": seconds}, timeout)
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
        with self._lock:
            self.statuses[status] += 1

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> Counter:
        for thread in self._threads:
            thread.join()
        return self.statuses


class RssSampler:
    """Sample a server's resident memory every few milliseconds; keep the peak."""

    def __init__(self, server, interval=0.02):
        self.server, self.interval = server, interval
        self.peak = server.rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.server.rss_bytes())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
