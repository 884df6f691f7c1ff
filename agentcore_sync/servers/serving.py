"""One way to serve an agent: the settings every server gets, however it is started.

``app.run()``, ``agentcore-sync serve`` and the gunicorn settings module all
come here for the same things: the invocation bound derived from the
server's threads (so ``/ping`` never waits behind invocations), JSON log
lines, interpreter tuning, the app's lifespan entered before serving, and a
graceful stop on SIGTERM. Under a server that was started some other way
(plain ``gunicorn module:app``, ``waitress-serve``), the first request enters
the lifespan and says, once, what is off and the command that sets it right.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from ..core.runtime import Runtime
from ..core.versions import Gate, log_once
from ..observability.logging import configure_logging
from ..observability.tracing import enable_tracing

logger = logging.getLogger("agentcore_sync.serving")

#: Threads of a waitress server started here.
DEFAULT_THREADS = 16
#: Threads kept free of invocations for ``/ping`` and the status endpoints.
PING_RESERVE = 2
DEFAULT_PORT = 8080

#: CPython's collector thresholds while serving (its defaults are 700, 10, 10).
GC_THRESHOLDS = (4_000, 2, 2_000)
#: Seconds a thread may hold the GIL while others wait (CPython's default: 0.005).
SWITCH_INTERVAL = 0.0005

#: The command that serves an agent with every setting right, by server.
FIX_COMMANDS = {
    "gunicorn": "gunicorn -c python:agentcore_sync.servers.gunicorn_config MODULE:APP",
    "waitress": "agentcore-sync serve MODULE:APP",
}


def tune_interpreter() -> None:
    """Process-wide settings for a server that must answer ``/ping`` while it works.

    The cyclic collector holds the GIL while it walks young objects, and a burst
    of background tasks makes many that live as long as the tasks: the longest
    collection is the longest stall of ``/ping``. ``gc.freeze()`` takes what
    start-up made out of every later collection; the thresholds keep each young
    collection short while full collections stay as far apart as by default. A
    short switch interval lets the threads answering a ping have the GIL sooner
    while other threads run flat out; it costs some throughput of many short
    requests on many threads (see bench/RESULTS.md).
    ``AGENTCORE_SYNC_TUNE_INTERPRETER=0`` leaves all three alone.
    """
    if os.environ.get("AGENTCORE_SYNC_TUNE_INTERPRETER", "1") == "0":
        return
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)


def in_container() -> bool:
    """Whether this process runs in a container, as the official SDK tells it."""
    return os.path.exists("/.dockerenv") or bool(os.environ.get("DOCKER_CONTAINER"))


def default_host() -> str:
    """``$HOST``; else 127.0.0.1 on a workstation, 0.0.0.0 in a container."""
    host = os.environ.get("HOST")
    if host:
        return host
    if in_container():
        return "0.0.0.0"  # a container must listen on the interface its port is published on
    return "127.0.0.1"


#: Result stores whose records live in this machine's memory or on its disk.
LOCAL_STORES = ("sqlite:", "memory:")


def warn_of_local_results(runtimes: Iterable[Runtime]) -> None:
    """In a container (an AgentCore microVM), a store on the local disk ends with it:
    say so once per store, naming the stores that outlive it."""
    if not in_container():
        return
    for url in sorted(
        {r.result_store_url for r in runtimes if r.result_store_url.startswith(LOCAL_STORES)}
    ):
        logger.warning(
            "Background task results are kept in %s, inside this container: in AgentCore "
            "Runtime they end with the session's microVM. For results that outlive it, set "
            "AGENTCORE_SYNC_RESULT_STORE (or result_store=) to a shared store: "
            "dynamodb://TABLE, s3://BUCKET/PREFIX or redis://HOST",
            url,
        )


def default_port() -> int:
    """``$PORT``, else 8080."""
    return int(os.environ.get("PORT", DEFAULT_PORT))


def invocation_limit(threads: int, reserve: int = PING_RESERVE) -> int:
    """Invocations allowed at once on a server of ``threads`` threads."""
    return max(1, threads - reserve)


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 in brackets or not) is this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def runtimes_of(wsgi: Any) -> list[Runtime]:
    """The runtimes ``wsgi`` serves: its own, or every runtime of this process
    when it is some other WSGI app (a Flask app with agents mounted into it)."""
    runtime = getattr(wsgi, "runtime", wsgi)
    return [runtime] if isinstance(runtime, Runtime) else list(Runtime.instances)


def prefixed_routes(wsgi: Any, runtimes: Iterable[Runtime]) -> list[str]:
    """The paths of ``/ping`` and ``/invocations`` of the agents mounted into a Flask
    app ``wsgi`` under a prefix (a blueprint's ``url_prefix``); empty when they
    answer at the root, where the managed runtime calls them."""
    url_map = getattr(wsgi, "url_map", None)
    if url_map is None:
        return []
    names = {r.blueprint.name for r in runtimes if getattr(r, "blueprint", None) is not None}  # type: ignore[attr-defined]
    paths = sorted(
        rule.rule
        for rule in url_map.iter_rules()
        if rule.endpoint.partition(".")[0] in names
        and rule.rule.rsplit("/", 1)[-1] in ("ping", "invocations")
    )
    return [] if set(paths) <= {"/ping", "/invocations"} else paths


def prepare(
    runtimes: Iterable[Runtime],
    threads: int,
    server: str,
    gates: Iterable[Gate],
    wsgi: Any = None,
) -> None:
    """What every server does before it serves: logging, tuning, invocation bounds,
    then the lifespans entered (``LifespanFailed`` if one raised: do not serve).
    ``wsgi``, the app served, is looked at for agents mounted under a prefix."""
    runtimes = list(runtimes)
    if any(getattr(runtime, "configure_logging", True) for runtime in runtimes):
        configure_logging()
    for decided in gates:
        log_once(decided)
    prefixed = prefixed_routes(wsgi, runtimes)
    if prefixed:
        logger.warning(
            "The agent answers at %s, not at /ping and /invocations where the managed "
            "runtime calls it (a blueprint mounted with url_prefix)",
            ", ".join(prefixed),
        )
    warn_of_local_results(runtimes)
    for runtime in runtimes:
        enable_tracing(runtime)
    tune_interpreter()
    for runtime in runtimes:
        runtime.served_by = server
        limiter = runtime.limiter
        if limiter.limit is None:
            limiter.limit = invocation_limit(threads)
            logger.info(
                "Serving on %s with %d threads: at most %d concurrent invocations, "
                "%d threads kept for /ping",
                server,
                threads,
                limiter.limit,
                threads - limiter.limit,
            )
    for runtime in runtimes:
        runtime.start()


def note_unprepared_server(runtime: Runtime, environ: dict[str, Any]) -> None:
    """On the first request under a server that did not ``prepare`` the runtime: say,
    once, what is off and the command that sets it right. The caller checks
    ``runtime.served_by is None`` first (this runs once per runtime, but for
    requests that arrive together).

    The lifespan is entered first, so that a request that finds ``served_by``
    set finds it entered; ``LifespanFailed`` if it raised (that request, and
    every later one, is answered 500)."""
    runtime.start()
    software = str(environ.get("SERVER_SOFTWARE", ""))
    runtime.served_by = software or "an unknown server"
    if not software:
        return  # a test client: no server to name
    if getattr(runtime, "configure_logging", True):
        configure_logging()
    warn_of_local_results([runtime])
    enable_tracing(runtime)
    if software.lower().startswith("gunicorn"):
        logger.warning(
            "Served by gunicorn without agentcore_sync's settings: invocations are not "
            "bounded, so /ping can wait behind them (gunicorn's default sync worker serves "
            "one request at a time), and /ping counts this worker's tasks only; serve with "
            "`%s`",
            FIX_COMMANDS["gunicorn"],
        )
    elif runtime.limiter.limit is None:
        server = "waitress-serve" if software.lower().startswith("waitress") else software
        logger.warning(
            "Served by %s, whose thread count the runtime cannot know: invocations are not "
            "bounded, so /ping can wait behind them; serve with `%s` (or set "
            "max_concurrent_invocations)",
            server,
            FIX_COMMANDS["waitress"],
        )


@contextlib.contextmanager
def graceful_stop() -> Iterator[None]:
    """SIGTERM and Ctrl-C end the server (its ``run()`` returns); a second signal
    does not cut the graceful shutdown short. Handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals: the caller's server stops itself
        return
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise SystemExit(0)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    wsgi: Any,
    runtimes: Iterable[Runtime],
    port: int | None = None,
    host: str | None = None,
    **options: Any,
) -> None:
    """Serve ``wsgi`` on waitress until SIGTERM or Ctrl-C, then shut ``runtimes`` down."""
    from .waitress_server import create_server, gate_of_waitress

    runtimes = list(runtimes)
    threads = int(options.pop("threads", DEFAULT_THREADS))
    host = host or default_host()
    port = default_port() if port is None else port
    prepare(runtimes, threads, f"waitress at http://{host}:{port}", [gate_of_waitress()], wsgi)
    # waitress reads a whole body before the application sees it: the limit is
    # applied there, so that an oversized body is refused before it is read.
    body_limit = max((runtime.max_body_size for runtime in runtimes), default=None)
    server = create_server(wsgi, host, port, threads, body_limit, **options)
    logger.info("Serving on http://%s:%d", host, port)
    try:
        with graceful_stop():
            server.run()  # returns on SIGTERM or Ctrl-C: waitress catches the SystemExit
    finally:
        logger.info("Stopping: no new requests; waiting for background tasks")
        server.close()
        for runtime in runtimes:
            runtime.shutdown()
