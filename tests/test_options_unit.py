"""The constructor options, in process: lifespan, middleware, busy_while_invoking, keep-alive.

The same options on real servers are in ``test_options.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agentcore_sync import AgentCore, BedrockAgentCoreApp, LifespanFailed, PingStatus
from agentcore_sync.core.admission import InvocationLimiter
from agentcore_sync.core.streams import KEEPALIVE_COMMENT, EventStream

pytestmark = pytest.mark.unit

WAIT = 10.0  # seconds, an upper bound for what happens at once


def make_app(**options: Any) -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(result_store="memory://", configure_logging=False, **options)


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "not within the time bound"
        time.sleep(0.01)


# -- lifespan -------------------------------------------------------------------


def test_an_async_lifespan_is_given_the_app_and_runs_on_the_runtimes_loop() -> None:
    seen: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        seen.append(("enter", app, asyncio.get_running_loop(), asyncio.current_task()))
        yield
        seen.append(("exit", asyncio.current_task()))

    app = make_app(lifespan=lifespan)

    @app.entrypoint
    async def main(payload: Any) -> Any:
        return {"same_loop": asyncio.get_running_loop() is seen[0][2]}

    assert seen == []  # entered by whoever serves, not at construction
    app.runtime.start()
    assert seen[0][:3] == ("enter", app, app.runtime.loop.loop)
    assert app.test_client().post("/invocations", json={}).json == {"same_loop": True}
    app.runtime.start()  # once per process
    assert len(seen) == 1
    app.shutdown()
    # Exited in the task that entered it (anyio's cancel scopes need that).
    assert seen[1] == ("exit", seen[0][3])


def test_a_plain_context_manager_lifespan_and_its_other_forms() -> None:
    seen: list[str] = []

    @contextlib.contextmanager
    def factory(app: Any) -> Iterator[None]:
        seen.append("factory in")
        yield
        seen.append("factory out")

    def generator(app: Any) -> Iterator[None]:  # Starlette's deprecated form
        seen.append("generator in")
        yield
        seen.append("generator out")

    class Manager:
        def __enter__(self) -> None:
            seen.append("object in")

        def __exit__(self, *exc: Any) -> None:
            seen.append("object out")

    for lifespan in (factory, generator, Manager()):
        runtime = AgentCore(result_store="memory://", configure_logging=False, lifespan=lifespan)
        runtime.start()
        runtime.shutdown()
    assert seen == [
        "factory in", "factory out", "generator in", "generator out", "object in", "object out",
    ]  # fmt: skip


def test_the_first_request_enters_the_lifespan_before_it_is_served() -> None:
    entered = threading.Event()

    @contextlib.contextmanager
    def lifespan(app: Any) -> Iterator[None]:
        time.sleep(0.1)
        entered.set()
        yield

    app = make_app(lifespan=lifespan)

    @app.entrypoint
    def main(payload: Any) -> Any:
        return {"entered": entered.is_set()}

    client = app.test_client()
    answers: list[Any] = []
    requests = [
        threading.Thread(target=lambda: answers.append(client.post("/invocations", json={}).json))
        for _ in range(4)
    ]
    for request in requests:
        request.start()
    for request in requests:
        request.join(WAIT)
    assert answers == [{"entered": True}] * 4
    app.shutdown()


def test_a_lifespan_that_fails_on_entry_is_never_served_past() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        raise RuntimeError("the database is unreachable")
        yield

    app = make_app(lifespan=lifespan)
    with pytest.raises(LifespanFailed, match="RuntimeError: the database is unreachable"):
        app.runtime.start()
    # A server that did not enter it: every request, a ping too, is a JSON 500 naming it.
    client = app.test_client()
    for answer in (client.get("/ping"), client.post("/invocations", json={})):
        assert answer.status_code == 500
        assert answer.json == {
            "error": "Lifespan failed",
            "details": "The app's lifespan failed on entry: RuntimeError: the database is "
            "unreachable",
        }
    app.shutdown()  # nothing to exit


def test_an_error_on_exit_is_logged_and_shutdown_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    @contextlib.contextmanager
    def lifespan(app: Any) -> Iterator[None]:
        yield
        raise RuntimeError("could not flush")

    app = make_app(lifespan=lifespan)
    app.runtime.start()
    app.shutdown()
    assert "The app's lifespan failed on exit" in caplog.text
    assert "could not flush" in caplog.text


@pytest.mark.parametrize("lifespan", [42, "module:lifespan"])
def test_what_is_not_a_lifespan_is_refused_at_construction(lifespan: Any) -> None:
    with pytest.raises(TypeError, match="lifespan must be a callable taking the app"):
        make_app(lifespan=lifespan)


def test_a_lifespan_that_returns_no_context_manager_fails_on_entry() -> None:
    app = make_app(lifespan=lambda app: None)
    with pytest.raises(LifespanFailed, match="returned NoneType, not a context manager"):
        app.runtime.start()
    app.shutdown()


# -- middleware -----------------------------------------------------------------


def marking(name: str, order: list[str]) -> Any:
    def middleware(wsgi_app: Any) -> Any:
        def app(environ: dict[str, Any], start_response: Any) -> Any:
            order.append(name)
            return wsgi_app(environ, start_response)

        return app

    return middleware


def test_middleware_wraps_the_app_the_first_outermost_and_sees_every_request() -> None:
    order: list[str] = []
    app = make_app(middleware=[marking("first", order), marking("second", order)])

    @app.entrypoint
    def main(payload: Any) -> Any:
        order.append("handler")
        return payload

    client = app.test_client()
    assert client.post("/invocations", json={"a": 1}).json == {"a": 1}
    assert client.get("/ping").status_code == 200
    assert order == ["first", "second", "handler", "first", "second"]
    # A server asks the app before answering a ping itself: the app says no.
    ping_body = app.inline_ping()
    assert ping_body is not None and ping_body() is None
    app.shutdown()


def test_without_middleware_a_server_may_answer_pings_itself() -> None:
    app = make_app()
    ping_body = app.inline_ping()
    if app.fast_path is None:
        pytest.skip("the fast path is gated off on this Flask version")
    assert ping_body is not None and b"Healthy" in (ping_body() or b"")
    app.shutdown()


def test_starlette_middleware_is_refused_with_the_wsgi_way() -> None:
    starlette = pytest.importorskip("starlette.middleware")
    from starlette.middleware.cors import CORSMiddleware

    for entry in (starlette.Middleware(CORSMiddleware, allow_origins=["*"]), CORSMiddleware):
        with pytest.raises(TypeError) as refused:
            make_app(middleware=[entry])
        message = str(refused.value)
        assert "middleware=[lambda app: MyWSGIMiddleware(app)]" in message
        assert "app.wsgi_app = MyWSGIMiddleware(app.wsgi_app)" in message
        assert "ASGI middleware" in message and "CORSMiddleware" in message


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (42, "not callable"),
        (lambda app, options: app, "cannot be called with one argument"),
        (None, "not callable"),
    ],
)
def test_what_is_not_wsgi_middleware_is_refused(entry: Any, why: str) -> None:
    with pytest.raises(TypeError, match=why):
        make_app(middleware=[entry])


def test_middleware_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="not a list"):
        make_app(middleware=marking("only", []))


# -- busy while invoking --------------------------------------------------------


def test_busy_while_invoking_follows_invocations_in_flight() -> None:
    release = threading.Event()
    app = make_app(busy_while_invoking=True)

    @app.entrypoint
    def main(payload: Any) -> Any:
        release.wait(WAIT)
        return payload

    client = app.test_client()
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    invoking = threading.Thread(target=lambda: client.post("/invocations", json={}))
    invoking.start()
    wait_for(lambda: app.runtime.limiter.in_flight == 1)
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    release.set()
    invoking.join(WAIT)
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    app.shutdown()


def test_busy_while_invoking_holds_while_a_stream_is_open() -> None:
    app = make_app(busy_while_invoking=True)

    @app.entrypoint
    def main(payload: Any) -> Any:
        yield "a"
        yield "b"

    answer = app.test_client().post("/invocations", json={}, buffered=False)
    body = iter(answer.response)
    assert next(body) == b'data: "a"\n\n'
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    assert list(body) == [b'data: "b"\n\n']
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY  # until closed
    answer.close()
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    app.shutdown()


def test_by_default_an_invocation_alone_keeps_the_agent_healthy() -> None:
    limiter = InvocationLimiter(limit=4)
    assert limiter.invoking is None
    app = make_app()
    assert app.runtime.limiter.try_acquire()
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    app.runtime.limiter.release()
    app.shutdown()


def test_busy_while_invoking_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTCORE_SYNC_BUSY_WHILE_INVOKING", "1")
    app = make_app()
    assert app.runtime.limiter.try_acquire()
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    app.runtime.limiter.release()
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    app.shutdown()
    assert not make_app(busy_while_invoking=False).runtime.busy_while_invoking
    monkeypatch.setenv("AGENTCORE_SYNC_BUSY_WHILE_INVOKING", "maybe")
    with pytest.raises(ValueError, match="AGENTCORE_SYNC_BUSY_WHILE_INVOKING must be 1 or 0"):
        make_app()


def test_the_limiter_publishes_busy_while_invoking_to_other_workers() -> None:
    published: list[bool] = []
    limiter = InvocationLimiter(limit=2, busy_while_invoking=True)
    limiter.publish = published.append
    assert limiter.try_acquire() and limiter.try_acquire()  # in flight, then saturated too
    limiter.release()
    limiter.release()
    assert published == [True, False]


# -- SSE keep-alive -------------------------------------------------------------


def blocking_items(go_on: threading.Event, closed: list[str]) -> Iterator[str]:
    try:
        yield "a"
        go_on.wait(WAIT)
        yield "b"
    finally:
        closed.append("closed")


def test_a_silent_stream_sends_keepalive_comments_without_disturbing_its_source() -> None:
    go_on = threading.Event()
    closed: list[str] = []
    stream = EventStream(blocking_items(go_on, closed), contextvars.copy_context())
    stream.keep_alive(0.01)
    assert next(stream) == b'data: "a"\n\n'
    # The source is blocked until told to go on: only comments can come meanwhile.
    assert next(stream) == KEEPALIVE_COMMENT
    assert next(stream) == KEEPALIVE_COMMENT
    go_on.set()
    rest = list(stream)
    assert rest[-1] == b'data: "b"\n\n' and set(rest[:-1]) <= {KEEPALIVE_COMMENT}
    stream.close()
    wait_for(lambda: closed == ["closed"])


def test_a_stream_closed_during_a_pull_closes_its_source_after_it_and_frees_its_slot() -> None:
    go_on = threading.Event()
    closed: list[str] = []
    limiter = InvocationLimiter(busy_while_invoking=True)
    assert limiter.try_acquire()
    stream = EventStream(blocking_items(go_on, closed), contextvars.copy_context())
    stream.hold_slot(limiter)
    stream.keep_alive(0.01)
    next(stream)
    assert next(stream) == KEEPALIVE_COMMENT
    stream.close()  # the client went away while the source was working
    assert closed == [] and limiter.in_flight == 1
    go_on.set()
    wait_for(lambda: closed == ["closed"] and limiter.in_flight == 0)


def test_keepalive_from_the_constructor_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert make_app().runtime.sse_keepalive is None  # off by default, as in the official SDK
    assert make_app(sse_keepalive=15).runtime.sse_keepalive == 15.0
    assert make_app(sse_keepalive=0).runtime.sse_keepalive is None
    monkeypatch.setenv("AGENTCORE_SYNC_SSE_KEEPALIVE", "20")
    assert make_app().runtime.sse_keepalive == 20.0
    monkeypatch.setenv("AGENTCORE_SYNC_SSE_KEEPALIVE", "soon")
    with pytest.raises(ValueError, match="AGENTCORE_SYNC_SSE_KEEPALIVE must be a number"):
        make_app()
    with pytest.raises(ValueError, match="sse_keepalive must be a positive number"):
        make_app(sse_keepalive=-1)
