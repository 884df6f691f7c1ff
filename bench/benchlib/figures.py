"""The eight figures of issue 5: what each measures, on which peers, against which target."""

from .peers import (
    BARE_GUNICORN,
    BARE_WAITRESS,
    OURS_GUNICORN,
    OURS_INPROC,
    OURS_WAITRESS,
    SDK_INPROC,
    SDK_UVICORN,
    SDK_UVICORN_ASYNC,
    Peer,
)
from .results import Check, Figure, Metric

OURS_W1 = Peer("ours", "gunicorn", workers=1)
OURS_W3 = Peer("ours", "gunicorn", workers=3)
BARE_W1 = Peer("bare", "gunicorn", workers=1)
BARE_W3 = Peer("bare", "gunicorn", workers=3)

RPS = Metric("rps", "requests/s")
P50 = Metric("p50_ms", "/ping p50", "{:,.1f}", "ms")
P99 = Metric("p99_ms", "/ping p99", "{:,.1f}", "ms")

THROUGHPUT_PEERS = [SDK_UVICORN, OURS_WAITRESS, BARE_WAITRESS, OURS_GUNICORN, BARE_GUNICORN]


def _throughput_checks(floor: float) -> list[Check]:
    return [
        Check(
            "agentcore_sync on gunicorn ÷ official SDK",
            (OURS_GUNICORN, "rps"),
            (SDK_UVICORN, "rps"),
            ">=",
            2.0,
        ),
        Check(
            "agentcore_sync on waitress ÷ official SDK",
            (OURS_WAITRESS, "rps"),
            (SDK_UVICORN, "rps"),
            ">=",
            2.0,
        ),
        Check(
            "agentcore_sync ÷ bare WSGI, on waitress",
            (OURS_WAITRESS, "rps"),
            (BARE_WAITRESS, "rps"),
            ">=",
            floor,
        ),
        Check(
            "agentcore_sync ÷ bare WSGI, on gunicorn",
            (OURS_GUNICORN, "rps"),
            (BARE_GUNICORN, "rps"),
            ">=",
            floor,
        ),
        Check(
            "bare WSGI on gunicorn ÷ official SDK (the ceiling)",
            (BARE_GUNICORN, "rps"),
            (SDK_UVICORN, "rps"),
        ),
    ]


def _versus_sdk(label: str, ours: Peer, metric: str, target: float) -> Check:
    return Check(f"{label} ÷ official SDK", (ours, metric), (SDK_UVICORN, metric), "<=", target)


def build() -> list[Figure]:
    """Fresh, empty figures for one run, in the order of their numbers."""
    figures = [
        Figure(
            1,
            "/ping throughput",
            "≥ 2.0x the official SDK on uvicorn; ≥ 0.8x a bare WSGI callable on the same "
            "server (waitress, and gunicorn with the shipped config).",
            "wrk, one thread, keep-alive connections, GET /ping; successful responses per second.",
            [RPS],
            THROUGHPUT_PEERS,
            _throughput_checks(0.8),
        ),
        Figure(
            2,
            "/invocations throughput, small JSON echo",
            "≥ 2.0x the official SDK; ≥ 0.7x the bare WSGI callable on the same server.",
            "wrk, one thread, keep-alive connections, POST /invocations with a 60-byte JSON "
            "body that a plain-function entrypoint returns as is.",
            [RPS],
            THROUGHPUT_PEERS,
            _throughput_checks(0.7),
        ),
        Figure(
            3,
            "/ping latency while long invocations hold the server",
            "p99 ≤ 50 ms (the official SDK's figure, with 2x its thread pool, beside it).",
            "Twice the server's thread count of POST /invocations that sleep in the handler "
            "are sent at once (official SDK: twice its anyio thread pool); meanwhile a prober "
            "sends GET /ping on a fresh connection every 20 ms, open-loop, each latency "
            "counted from the moment the probe was due.",
            [P50, P99],
            [SDK_UVICORN, OURS_WAITRESS, OURS_GUNICORN],
            [
                Check(
                    "agentcore_sync on waitress: p99", (OURS_WAITRESS, "p99_ms"), None, "<=", 50.0
                ),
                Check(
                    "agentcore_sync on gunicorn: p99", (OURS_GUNICORN, "p99_ms"), None, "<=", 50.0
                ),
                Check("official SDK on uvicorn: p99", (SDK_UVICORN, "p99_ms")),
            ],
        ),
        Figure(
            4,
            "Task registry: add_async_task + complete_async_task pairs/s",
            "≥ 30x the official SDK single-threaded; ≥ 20x with 8 threads.",
            "In-process, one process per runtime, logging.basicConfig(filename=..., "
            "level=INFO) before the app is made (stderr to a file too).",
            [Metric("pairs_1", "pairs/s, 1 thread"), Metric("pairs_8", "pairs/s, 8 threads")],
            [SDK_INPROC, OURS_INPROC],
            [
                Check(
                    "1 thread: agentcore_sync ÷ official SDK",
                    (OURS_INPROC, "pairs_1"),
                    (SDK_INPROC, "pairs_1"),
                    ">=",
                    30.0,
                ),
                Check(
                    "8 threads: agentcore_sync ÷ official SDK",
                    (OURS_INPROC, "pairs_8"),
                    (SDK_INPROC, "pairs_8"),
                    ">=",
                    20.0,
                ),
            ],
        ),
        Figure(
            5,
            "@async_task call overhead over the bare function",
            "≤ 5 µs for plain functions, ≤ 10 µs for coroutine functions (the official SDK: "
            "about 230 µs; it accepts only coroutine functions).",
            "In-process, same logging as figure 4; per-call time of the decorated function "
            "minus the bare one, each the best of interleaved timeit-style repeats; coroutine "
            "functions awaited in a loop on one event loop.",
            [
                Metric("plain_us", "plain function", "{:,.2f}", "µs"),
                Metric("coroutine_us", "coroutine function", "{:,.2f}", "µs"),
            ],
            [SDK_INPROC, OURS_INPROC],
            [
                Check("plain function", (OURS_INPROC, "plain_us"), None, "<=", 5.0),
                Check("coroutine function", (OURS_INPROC, "coroutine_us"), None, "<=", 10.0),
                Check("official SDK, coroutine function", (SDK_INPROC, "coroutine_us")),
            ],
        ),
        Figure(
            6,
            "10,000 concurrent background coroutine tasks",
            "all started in under 1 s; /ping p99 ≤ 10 ms meanwhile; resident memory growth "
            "≤ 100 MB.",
            "One invocation starts the tasks, each sleeping: agentcore_sync with fn.start() "
            "on an @app.async_task coroutine function; the official SDK with "
            "asyncio.create_task on its worker loop from a coroutine entrypoint. Start time: "
            "the invocation's round trip, which answers once all tasks are registered. /ping "
            "probed every 10 ms on fresh connections from just before it; memory: the server's "
            "peak RSS minus its RSS before.",
            [
                Metric("start_s", "all started", "{:,.3f}", "s"),
                Metric("start_server_s", "of which in the server", "{:,.3f}", "s"),
                P50,
                P99,
                Metric("rss_mb", "RSS growth", "{:,.1f}", "MB"),
            ],
            [SDK_UVICORN_ASYNC, OURS_WAITRESS],
            [
                Check("all started", (OURS_WAITRESS, "start_s"), None, "<=", 1.0),
                Check("/ping p99", (OURS_WAITRESS, "p99_ms"), None, "<=", 10.0),
                Check("RSS growth", (OURS_WAITRESS, "rss_mb"), None, "<=", 100.0),
                Check("official SDK: all started", (SDK_UVICORN_ASYNC, "start_s")),
                Check("official SDK: /ping p99", (SDK_UVICORN_ASYNC, "p99_ms")),
            ],
        ),
        Figure(
            7,
            "/ping throughput with 10,000 active tasks",
            "≥ 0.95x with none.",
            "Two of the same server, one with the tasks of figure 6 sleeping, the other "
            "with none; wrk on GET /ping alternates between them in one-second runs (as many "
            "pairs as a load run has seconds, A B B A), so that drift falls on both alike. "
            "A round's ratio is the sum of the loaded runs over the sum of the others; the "
            "figure is the median of the rounds' ratios.",
            [
                Metric("rps_none", "requests/s, no task"),
                Metric("rps_tasks", "requests/s, 10,000 tasks"),
                Metric("ratio", "with ÷ without", "{:,.3f}", "\N{MULTIPLICATION SIGN}"),
            ],
            [SDK_UVICORN_ASYNC, OURS_WAITRESS],
            [
                Check("agentcore_sync: with ÷ without", (OURS_WAITRESS, "ratio"), None, ">=", 0.95),
                Check("official SDK: with ÷ without", (SDK_UVICORN_ASYNC, "ratio")),
            ],
        ),
        Figure(
            9,
            "What a microVM costs: start, idle memory, idle CPU",
            "start ≤ 0.35x the official SDK's; idle RSS ≤ 0.6x the SDK's on waitress and "
            "≤ 1.0x on gunicorn (all its processes); idle CPU ≤ 0.25x the SDK's.",
            "The same agent started as its users start it: app.run() (waitress), gunicorn "
            "with the shipped settings, the official SDK's app.run() (uvicorn). Start: from "
            "the process's launch to the first Healthy /ping, polled every 5 ms. Idle RSS: "
            "the resident memory of all the server's processes after start and a few pings. "
            "Idle CPU: user and system CPU of all of them over the idle window, a /ping every "
            "2 s, per minute.",
            [
                Metric("start_s", "start", "{:,.3f}", "s"),
                Metric("rss_mb", "idle RSS", "{:,.1f}", "MB"),
                Metric("cpu_ms", "idle CPU", "{:,.0f}", "ms/min"),
            ],
            [SDK_UVICORN, OURS_WAITRESS, OURS_GUNICORN],
            [
                _versus_sdk("start: app.run()", OURS_WAITRESS, "start_s", 0.35),
                _versus_sdk("start: gunicorn", OURS_GUNICORN, "start_s", 0.35),
                _versus_sdk("idle RSS: app.run()", OURS_WAITRESS, "rss_mb", 0.6),
                _versus_sdk("idle RSS: gunicorn", OURS_GUNICORN, "rss_mb", 1.0),
                _versus_sdk("idle CPU: app.run()", OURS_WAITRESS, "cpu_ms", 0.25),
                _versus_sdk("idle CPU: gunicorn", OURS_GUNICORN, "cpu_ms", 0.25),
            ],
        ),
        Figure(
            8,
            "/ping throughput under gunicorn -w 3 (multi-worker truth on)",
            "≥ 0.8x the same server with one worker.",
            "wrk on GET /ping, gunicorn with the shipped config and -w 3 or -w 1.",
            [RPS],
            [OURS_W1, OURS_W3, BARE_W1, BARE_W3],
            [
                Check("agentcore_sync: -w 3 ÷ -w 1", (OURS_W3, "rps"), (OURS_W1, "rps"), ">=", 0.8),
                Check("bare WSGI: -w 3 ÷ -w 1", (BARE_W3, "rps"), (BARE_W1, "rps")),
            ],
        ),
    ]
    return sorted(figures, key=lambda figure: figure.number)
