"""Serving a runtime on waitress (``app.run()``), and the hooks of the gunicorn config.

The defaults are chosen for agents: enough threads for concurrent long
invocations, and a reserve of them that invocations may not take, so that
``/ping`` is always answered. waitress's I/O thread answers plain pings
itself (``inline_ping``); the gunicorn worker that does the same is in
``gunicorn_worker``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .inline_ping import InlinePing
from .serialization import encode

if TYPE_CHECKING:
    from .runtime import AgentCore

logger = logging.getLogger("agentcore_sync.serving")

#: Threads of ``run()``'s waitress server.
DEFAULT_THREADS = 16
#: Threads kept free of invocations for ``/ping`` and the status endpoints.
PING_RESERVE = 2


#: CPython's collector thresholds while serving (its defaults are 700, 10, 10).
GC_THRESHOLDS = (4_000, 2, 2_000)
#: Seconds a thread may hold the GIL while others wait (CPython's default: 0.005).
SWITCH_INTERVAL = 0.0005


def tune_interpreter() -> None:
    """Process-wide settings for a server that must answer ``/ping`` while it works.

    The cyclic collector holds the GIL while it walks young objects, and a burst
    of background tasks makes many that live as long as the tasks: the longest
    collection is the longest stall of ``/ping``. ``gc.freeze()`` takes what
    start-up made out of every later collection. The thresholds keep each young
    collection to about 12,000 objects (4,000 new ones, and the middle generation
    every third time), 2-4 ms, where (16,000, 20) let one walk 320,000 for 90-110
    ms in a second burst of 10,000 task starts; full collections stay as far apart
    as they were (24 million net allocations). A 0.5 ms switch interval lets the
    threads answering a ping have the GIL sooner while the starting request and
    the event loop both run flat out (/ping p99 9 ms there, 18-19 ms at 1-2 ms).
    It has a price where many threads run short requests: small invocations on
    gunicorn's 16 threads, 2,800-3,000 requests/s against 3,500-3,900 at 1-5 ms.
    ``AGENTCORE_SYNC_TUNE_INTERPRETER=0`` leaves all three alone.
    """
    if os.environ.get("AGENTCORE_SYNC_TUNE_INTERPRETER", "1") == "0":
        return
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)


def default_host() -> str:
    """127.0.0.1 on a workstation; 0.0.0.0 in a container, where the port is published."""
    if os.path.exists("/.dockerenv") or os.environ.get("DOCKER_CONTAINER"):
        return "0.0.0.0"  # a container must listen on the interface its port is published on
    return "127.0.0.1"


def invocation_limit(threads: int, reserve: int = PING_RESERVE) -> int:
    """Invocations allowed at once on a server of ``threads`` threads."""
    return max(1, threads - reserve)


def adopt_thread_count(runtime: AgentCore, threads: int) -> None:
    """Bound invocations by the server's threads, unless the user set the bound."""
    limiter = runtime._limiter
    if limiter.limit is None:
        limiter.limit = invocation_limit(threads)
        logger.info(
            "Serving with %d threads: at most %d concurrent invocations, %d threads kept for /ping",
            threads,
            limiter.limit,
            threads - limiter.limit,
        )


def _runtimes(app: Any) -> list[AgentCore]:
    from .runtime import AgentCore

    return list(AgentCore.instances) if not isinstance(app, AgentCore) else [app]


def gunicorn_post_worker_init(worker: Any) -> None:
    """gunicorn hook: bound invocations by the worker's threads; count all workers' tasks;
    answer gunicorn's own refusals of malformed HTTP in JSON."""
    import gunicorn.util

    gunicorn.util.write_error = _write_gunicorn_error
    tune_interpreter()
    for runtime in _runtimes(worker.wsgi):
        adopt_thread_count(runtime, int(worker.cfg.threads))
        runtime.join_workers(f"gunicorn-{worker.ppid}")


def gunicorn_worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: shut each runtime down (wait for tasks, record the rest)."""
    for runtime in _runtimes(getattr(worker, "wsgi", None)):
        runtime.shutdown()


def _write_gunicorn_error(sock: Any, status: int, reason: str, message: str) -> None:
    # gunicorn writes its refusals (bad request line, oversized headers...) as
    # HTML through this one function, before any WSGI code runs; every answer
    # of an agent is JSON, so this worker writes them as JSON instead.
    import gunicorn.util

    body = encode({"error": reason, "details": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


def _json_error_channel(body_limit: int) -> type:
    """A waitress channel whose own refusals (malformed HTTP, body too large) are JSON,
    the body limit's in the same words as the runtime's."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JSONErrorTask(ErrorTask):  # type: ignore[misc]
        def execute(self) -> None:
            error = self.request.error
            if error.code == 413:
                body = encode({"error": "Request body too large", "limit": body_limit})
            else:
                body = encode({"error": error.reason, "details": error.body})
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JSONErrorChannel(HTTPChannel):  # type: ignore[misc]
        error_task_class = JSONErrorTask

    return JSONErrorChannel


def create_server(wsgi: Any, host: str, port: int, threads: int, **options: Any) -> Any:
    """A waitress server of ``threads`` threads for ``wsgi``, whose I/O thread answers
    plain pings itself when ``wsgi`` is a runtime's app (see ``inline_ping``)."""
    import waitress

    options.setdefault("ident", "agentcore_sync")
    ident = options["ident"]
    server_header = b"Server: %s\r\n" % ident.encode("latin-1") if ident else b""
    inline = InlinePing.for_served(wsgi, server_header)
    dispatcher = _dispatcher(inline)
    dispatcher.set_thread_count(threads)
    return waitress.create_server(
        wsgi, host=host, port=port, threads=threads, _dispatcher=dispatcher, **options
    )


def _dispatcher(inline: InlinePing | None) -> Any:
    """waitress's task dispatcher, except that plain pings are answered where they arrive."""
    from waitress.task import ThreadedTaskDispatcher

    # Set on the dispatcher's own threads: add_task() called there (by a
    # channel with pipelined requests) hands on, as waitress does.
    pool_thread = threading.local()

    class PingAnsweringDispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
        def handler_thread(self, thread_no: int) -> None:
            pool_thread.marked = True
            super().handler_thread(thread_no)

        def add_task(self, channel: Any) -> None:
            # On the I/O thread this is called with the channel's requests lock
            # held, when its only request is complete: none of its requests is
            # being served, so an answer written now is in order.
            if (
                inline is None
                or getattr(pool_thread, "marked", False)
                or not _answer_inline(channel, inline)
            ):
                super().add_task(channel)

    return PingAnsweringDispatcher()


def _answer_inline(channel: Any, inline: InlinePing) -> bool:
    """Answer the channel's one request if it is a plain ping; whether it was."""
    if len(channel.requests) != 1:
        return False
    request = channel.requests[0]
    adj = channel.adj
    if (
        request.error is not None
        or request.command != "GET"
        or request.path != "/ping"
        or request.version != "1.1"
        or request.connection_close
        or request.chunked
        or request.content_length
        or request.expect_continue
        or "UPGRADE" in request.headers
        or adj.url_prefix
        or not channel.connected
        # write_soon() would wait for the I/O thread to flush this much.
        or channel.total_outbufs_len >= adj.outbuf_high_watermark
    ):
        return False
    answer = inline.response()
    if answer is None:
        return False
    channel.write_soon(answer)
    # What service() does after a request: a fresh buffer for the next answer.
    if channel.current_outbuf_count > 0:
        channel.current_outbuf_count = adj.outbuf_high_watermark
    channel.requests.pop(0)
    request.close()
    channel.last_activity = time.time()
    return True


def serve(runtime: AgentCore, port: int = 8080, host: str | None = None, **options: Any) -> None:
    """Serve ``runtime`` on waitress until SIGTERM or Ctrl-C, then shut it down gracefully."""
    threads = int(options.pop("threads", DEFAULT_THREADS))
    adopt_thread_count(runtime, threads)
    tune_interpreter()
    # waitress reads a whole body before the application sees it: the limit is
    # applied there, so that an oversized body is refused before it is read.
    # (waitress refuses a body of its limit or more, the runtime one over its limit.)
    options.setdefault("max_request_body_size", runtime.max_body_size + 1)
    server = create_server(
        runtime.wsgi_app_for_serving(),
        host=host or default_host(),
        port=port,
        threads=threads,
        **options,
    )
    server.channel_class = _json_error_channel(runtime.max_body_size)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    logger.info("Serving on http://%s:%d", host or default_host(), port)
    try:
        server.run()
    finally:
        logger.info("Stopping: no new requests; waiting for background tasks")
        server.close()
        runtime.shutdown()
        signal.signal(signal.SIGTERM, previous)
