"""gunicorn settings that make an agent right, from any folder:

    gunicorn -c python:agentcore_sync.servers.gunicorn_config MODULE:APP

The repository's ``gunicorn.conf.py`` and ``agentcore-sync serve --server
gunicorn`` read this module too. Each setting says why; override any of them
on the command line or with ``GUNICORN_CMD_ARGS`` as usual.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..core.versions import GUNICORN_WORKER, gate

# The arbiter reads this module and serves nothing: what the hooks need (the runtime,
# Flask through the app) is imported in the worker that runs them.

# The managed runtime reaches the container on port 8080 on every interface.
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"

# Threads, not processes: a sync worker serves one request at a time, so a single
# long invocation would make /ping wait. gthread serves each request on a thread
# and keeps idle keep-alive connections off the threads; the shipped subclass of
# it also answers plain pings on its main thread, where it is tested to (see
# ``gunicorn_worker``).
worker_class = (
    "agentcore_sync.servers.gunicorn_worker.ThreadWorker"
    if gate(*GUNICORN_WORKER).on
    else "gthread"
)
threads = int(os.environ.get("AGENTCORE_SYNC_THREADS", "16"))

# One worker by default: background tasks and their event loop live in a worker,
# and the managed runtime gives each session its own microVM. (Several workers
# work too, `-w 3`: /ping counts the tasks of all of them.)
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))

# The arbiter kills a worker that misses heartbeats for `timeout` seconds. gthread
# heartbeats from its main loop, not from request threads, so a 40-minute
# invocation does not miss any; 120 s only bounds a worker that is truly stuck.
timeout = 120

# On SIGTERM the worker stops accepting, finishes requests and background tasks
# (the runtime waits AGENTCORE_SYNC_SHUTDOWN_GRACE = 25 s for them), records what
# is left as interrupted, and must be done before the arbiter's SIGKILL.
graceful_timeout = int(os.environ.get("AGENTCORE_SYNC_GRACEFUL_TIMEOUT", "30"))

# Longer than the idle timeout of the load balancers in front (60 s), so they,
# not we, close idle connections and no request races a closing socket.
keepalive = 75


def post_worker_init(worker: Any) -> None:
    """Each worker bounds its invocations by its threads, keeping threads for /ping,
    enters the app's lifespan, and counts the tasks of every worker of its server."""
    from ..core.lifespan import LifespanFailed
    from .serving import prepare, runtimes_of

    decided = gate(*GUNICORN_WORKER)
    runtimes = runtimes_of(worker.wsgi)
    try:
        prepare(
            runtimes,
            int(worker.cfg.threads),
            f"gunicorn worker {os.getpid()}",
            [decided],
            worker.wsgi,
        )
    except LifespanFailed:
        # Logged with its traceback. gunicorn's documented exit code for a worker
        # that cannot boot: the arbiter stops the server, "Worker failed to boot.",
        # and exits with it, rather than booting new workers that fail alike.
        from gunicorn.arbiter import Arbiter

        sys.exit(Arbiter.WORKER_BOOT_ERROR)
    if decided.on:
        _answer_refusals_in_json()
    for runtime in runtimes:
        runtime.join_workers(f"gunicorn-{worker.ppid}")


def worker_exit(server: Any, worker: Any) -> None:
    """Each worker waits for its background tasks, records what is left, and exits
    the app's lifespan, on exit."""
    from .serving import runtimes_of

    for runtime in runtimes_of(getattr(worker, "wsgi", None)):
        runtime.shutdown()


def _answer_refusals_in_json() -> None:
    # gunicorn writes its refusals (bad request line, oversized headers...) as
    # HTML through this one function, before any WSGI code runs; every answer
    # of an agent is JSON. Only on the gunicorn versions this is tested on.
    import gunicorn.util

    from ..core.serialization import encode

    def write_error(sock: Any, status: int, reason: str, message: str) -> None:
        body = encode({"error": reason, "details": message})
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)

    gunicorn.util.write_error = write_error


#: The settings above, by name, for code that applies them (``agentcore-sync serve``).
SETTINGS = {
    "bind": bind,
    "worker_class": worker_class,
    "threads": threads,
    "workers": workers,
    "timeout": timeout,
    "graceful_timeout": graceful_timeout,
    "keepalive": keepalive,
    "post_worker_init": post_worker_init,
    "worker_exit": worker_exit,
}

__all__ = list(SETTINGS)
