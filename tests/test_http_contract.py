"""The HTTP contract of SPEC §3, in-process with Flask's test client.

The cases in ``CASES`` take a *target* (something that sends one HTTP request
and returns a ``Reply``) so that ``test_real_servers.py`` runs the very same
cases against real gunicorn and waitress processes.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import io
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import requests
from servers import Reply, parse_sse
from werkzeug.test import EnvironBuilder, run_wsgi_app

from agentcore_sync import AgentCore, BedrockAgentCoreApp, PingStatus, RequestContext
from agentcore_sync.core.context import BedrockAgentCoreContext

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))

import contract_app

pytestmark = [pytest.mark.unit, pytest.mark.contract]

SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_ID = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
JSON_HEADERS = {"Content-Type": "application/json"}

# -- targets -------------------------------------------------------------------


class _Calls:
    """The two calls of the contract, over whatever ``request`` a target has."""

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        raise NotImplementedError

    def invoke(self, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.request(
            "POST",
            "/invocations",
            json.dumps(payload).encode(),
            {**JSON_HEADERS, **(headers or {})},
        )

    def ping(self) -> Reply:
        return self.request("GET", "/ping")


class FlaskTarget(_Calls):
    """Requests through Flask's test client (in-process)."""

    def __init__(self, app: flask.Flask) -> None:
        self.client = app.test_client()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        response = self.client.open(path, method=method, data=body, headers=headers or {})
        return Reply(
            response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.data
        )


class HTTPTarget(_Calls):
    """Requests to a real server over a keep-alive connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        response = self.session.request(
            method, self.url + path, data=body, headers=headers or {}, timeout=15
        )
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_healthy(target: Any, timeout: float = 5.0) -> None:
    wait_until(lambda: target.ping().json()["status"] == "Healthy", timeout)


# -- the contract cases (shared with test_real_servers.py) ---------------------

CASES: list[Callable[[Any], None]] = []


def contract_case(func: Callable[[Any], None]) -> Callable[[Any], None]:
    CASES.append(func)
    return func


def assert_json_error(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.content_type == "application/json", reply.headers
    body = reply.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    return body


@contract_case
def ping_shape(target: Any) -> None:
    reply = target.ping()
    assert reply.status == 200
    assert reply.content_type == "application/json"
    body = reply.json()
    assert set(body) == {"status", "time_of_last_update"}
    assert body["status"] == "Healthy"
    assert type(body["time_of_last_update"]) is int
    assert body["time_of_last_update"] <= time.time() + 1


@contract_case
def echo_object(target: Any) -> None:
    payload = {"action": "echo", "list": [1, 2.5, None, True], "nested": {"a": "b"}}
    reply = target.invoke(payload)
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.json() == {"echo": payload}


@contract_case
def any_json_value_reaches_the_handler(target: Any) -> None:
    for value in [[1, 2, 3], "text", 42, 1.5, None, True, []]:
        reply = target.invoke(value)
        assert reply.status == 200, (value, reply.body)
        assert reply.json() == {"echo": value}


@contract_case
def unicode_round_trip(target: Any) -> None:
    payload = {"action": "echo", "text": "héllo ✓ 日本語 \U0001f600"}
    reply = target.invoke(payload)
    assert reply.status == 200
    assert reply.json() == {"echo": payload}


@contract_case
def flask_response_passes_through(target: Any) -> None:
    reply = target.invoke({"action": "response"})
    assert reply.status == 201
    assert reply.content_type == "text/plain"
    assert reply.headers["x-custom"] == "yes"
    assert reply.body == b"created"


@contract_case
def werkzeug_response_passes_through(target: Any) -> None:
    reply = target.invoke({"action": "werkzeug_response"})
    assert reply.status == 202
    assert reply.content_type == "application/octet-stream"
    assert reply.body == b"\x00\x01raw"


@contract_case
def generator_streams_sse(target: Any) -> None:
    reply = target.invoke({"action": "gen", "count": 4})
    assert reply.status == 200
    assert reply.content_type == "text/event-stream"
    assert reply.events() == [{"i": i} for i in range(4)]


@contract_case
def async_generator_streams_sse(target: Any) -> None:
    reply = target.invoke({"action": "agen", "count": 4})
    assert reply.status == 200
    assert reply.content_type == "text/event-stream"
    assert reply.events() == [{"i": i} for i in range(4)]


@contract_case
def error_mid_stream_ends_with_error_event(target: Any) -> None:
    for action in ("gen_error", "agen_error"):
        reply = target.invoke({"action": action})
        assert reply.status == 200
        assert reply.content_type == "text/event-stream"
        assert reply.events() == [
            {"i": 0},
            {"i": 1},
            {
                "error": "mid-stream",
                "error_type": "RuntimeError",
                "message": "An error occurred during streaming",
            },
        ], action


@contract_case
def values_json_cannot_encode_fall_back(target: Any) -> None:
    expected = {
        "pydantic": {"name": "m", "count": 2},
        "dataclass": {"x": 1, "y": 2},
        "object": {"kind": "plain", "size": 3},
    }
    for action, body in expected.items():
        reply = target.invoke({"action": action})
        assert reply.status == 200, (action, reply.body)
        assert reply.content_type == "application/json"
        assert reply.json() == body, action
    reply = target.invoke({"action": "set"})
    assert reply.status == 200
    assert sorted(reply.json()) == [1, 2, 3]
    # A circular structure still answers 200 with valid JSON (its text).
    reply = target.invoke({"action": "circular"})
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert isinstance(reply.json(), str) and "loop" in reply.json()


@contract_case
def invalid_json_is_400(target: Any) -> None:
    for body in (b"{not json", b"", b'{"a": 1', b"[1, 2,]"):
        reply = target.request("POST", "/invocations", body, JSON_HEADERS)
        error = assert_json_error(reply, 400)
        assert error["error"] == "Invalid JSON", body
        assert "details" in error


@contract_case
def invalid_encoding_is_400(target: Any) -> None:
    reply = target.request("POST", "/invocations", b'{"a": "\xff\xfe"}', JSON_HEADERS)
    error = assert_json_error(reply, 400)
    assert error["error"] == "Invalid encoding"


@contract_case
def body_at_the_limit_is_accepted_and_over_it_is_413(target: Any) -> None:
    limit = contract_app.MAX_BODY_SIZE
    head = b'{"action": "echo", "pad": "'
    tail = b'"}'
    exact = head + b"a" * (limit - len(head) - len(tail)) + tail
    assert len(exact) == limit
    reply = target.request("POST", "/invocations", exact, JSON_HEADERS)
    assert reply.status == 200
    assert len(reply.json()["echo"]["pad"]) == limit - len(head) - len(tail)
    over = head + b"a" * (limit + 1 - len(head) - len(tail)) + tail
    assert_json_error(target.request("POST", "/invocations", over, JSON_HEADERS), 413)


@contract_case
def handler_error_is_500_without_traceback(target: Any) -> None:
    reply = target.invoke({"action": "raise", "message": "the handler broke"})
    error = assert_json_error(reply, 500)
    assert error == {"error": "the handler broke"}
    assert b"Traceback" not in reply.body


@contract_case
def handler_json_decode_error_is_500_not_400(target: Any) -> None:
    reply = target.invoke({"action": "raise_json_decode"})
    error = assert_json_error(reply, 500)
    assert error["error"] != "Invalid JSON"


@contract_case
def http_exceptions_keep_their_status(target: Any) -> None:
    assert_json_error(target.invoke({"action": "teapot"}), 418)
    assert_json_error(target.invoke({"action": "abort404"}), 404)
    error = assert_json_error(target.invoke({"action": "conflict"}), 409)
    assert error["error"] == "already there"


@contract_case
def unknown_route_and_wrong_methods_answer_json(target: Any) -> None:
    assert_json_error(target.request("GET", "/no-such-route"), 404)
    for method in ("GET", "PUT", "DELETE"):
        reply = target.request(method, "/invocations")
        assert_json_error(reply, 405)
        assert "POST" in reply.headers["allow"]
    for method in ("POST", "PUT"):
        reply = target.request(method, "/ping")
        assert_json_error(reply, 405)
        assert "GET" in reply.headers["allow"]


FORWARDED = {
    "authorization": "Bearer abc",
    "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tenant": "tenant-1",
    "X-Amz-Bedrock-AgentCore-Identity-WAT": "wat-token",
    "X-Agent-Flavour": "vanilla",
    "OAuth2CallbackUrl": "https://example.com/callback",
    "WorkloadAccessToken": "workload-token",
}
WITHHELD = {
    "Accept-Language": "en",
    "Cache-Control": "no-cache",
    "If-None-Match": "xyz",
    "Cookie": "a=b",
    "Origin": "https://example.com",
    "Access-Control-Request-Method": "POST",
    "X-Forwarded-For": "10.0.0.1",
    "X-Real-IP": "10.0.0.2",
    "Forwarded": "for=10.0.0.3",
    "Via": "1.1 proxy",
    "Strict-Transport-Security": "max-age=1",
    "X-Frame-Options": "DENY",
    "Referer": "https://example.com/",
    "X-Amzn-Trace-Id": "Root=1-abc",
    "X-Amzn-Something-Else": "no",
    "X-Amz-Date": "20240101T000000Z",
    "X-Amz-Security-Token": "secret",
    "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
}


@contract_case
def request_headers_reach_the_context(target: Any) -> None:
    headers = {SESSION: "session-123", REQUEST_ID: "request-456", **FORWARDED, **WITHHELD}
    body = target.invoke({"action": "context"}, headers).json()
    assert body["session_id"] == "session-123"
    assert body["request_id"] == "request-456"
    assert body["ctx_session_id"] == "session-123"
    assert body["ctx_request_id"] == "request-456"
    assert body["method"] == "POST"
    # The identity WAT header wins over WorkloadAccessToken.
    assert body["workload_access_token"] == "wat-token"
    assert body["oauth2_callback_url"] == "https://example.com/callback"
    # Spelled as the official SDK spells them: lower case, and Authorization
    # under its canonical name whatever the wire casing.
    assert body["request_headers"] == {
        ("Authorization" if name.lower() == "authorization" else name.lower()): value
        for name, value in FORWARDED.items()
    }


@contract_case
def header_names_are_case_insensitive(target: Any) -> None:
    headers = {
        SESSION.lower(): "s-lower",
        REQUEST_ID.upper(): "r-upper",
        "workloadaccesstoken": "tok",
        "AUTHORIZATION": "Basic xyz",
    }
    body = target.invoke({"action": "context"}, headers).json()
    assert body["session_id"] == "s-lower"
    assert body["request_id"] == "r-upper"
    assert body["workload_access_token"] == "tok"
    assert body["request_headers"]["Authorization"] == "Basic xyz"


@contract_case
def request_id_is_generated_when_absent(target: Any) -> None:
    first = target.invoke({"action": "context"}).json()
    second = target.invoke({"action": "context"}).json()
    for body in (first, second):
        assert uuid.UUID(body["request_id"]).version == 4
        assert body["ctx_request_id"] == body["request_id"]
        assert body["session_id"] is None
        assert body["workload_access_token"] is None
    assert first["request_id"] != second["request_id"]


@contract_case
def debug_actions_go_to_the_handler_without_debug(target: Any) -> None:
    for action in ("ping_status", "job_status", "force_busy", "nonsense"):
        payload = {"_agent_core_app_action": action, "action": "echo"}
        reply = target.invoke(payload)
        assert reply.status == 200
        assert reply.json() == {"echo": payload}
    assert target.ping().json()["status"] == "Healthy"


def contract_app_with_a_hook() -> flask.Flask:
    """A second copy of contract_app with a ``before_request`` hook.

    A hook makes the app serve ``/ping`` and ``/invocations`` through Flask's
    full dispatch rather than the runtime's shorter way, so the cases run on both.
    """
    name = "contract_app_with_hook"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, Path(contract_app.__file__))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        seen = module.seen_by_hook = []

        @module.app.before_request
        def hook() -> None:
            seen.append(flask.request.path)

    return module.app


@pytest.fixture(params=["plain", "with-hook"])
def contract(request: pytest.FixtureRequest) -> Iterator[FlaskTarget]:
    if request.param == "plain":
        yield FlaskTarget(contract_app.app)
        return
    app = contract_app_with_a_hook()
    seen = sys.modules["contract_app_with_hook"].seen_by_hook
    before = len(seen)
    yield FlaskTarget(app)
    assert len(seen) > before, "the hook ran: the full Flask path served the case"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_contract_in_process(case: Callable[[Any], None], contract: FlaskTarget) -> None:
    case(contract)


# -- in-process only -----------------------------------------------------------


def new_app(**options: Any) -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(configure_logging=False, **options)


class Exploding(io.RawIOBase):
    """A request body that must never be read."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")

    readinto = read  # type: ignore[assignment]


class Endless(io.RawIOBase):
    """A chunked body that never ends; counts what was read from it."""

    def __init__(self) -> None:
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 65536 if size is None or size < 0 else min(size, 65536)
        self.consumed += size
        return b" " * size


def call_wsgi(app: flask.Flask, environ: dict[str, Any]) -> Reply:
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    return Reply(
        int(status.split()[0]), {k.lower(): v for k, v in headers.items()}, b"".join(app_iter)
    )


def test_declared_length_over_the_limit_is_413_without_reading_the_body() -> None:
    app = new_app(max_body_size=1000)
    app.entrypoint(lambda payload: {"ok": True})
    environ = EnvironBuilder(path="/invocations", method="POST").get_environ()
    environ["wsgi.input"] = Exploding()
    environ["CONTENT_LENGTH"] = "1001"
    environ["CONTENT_TYPE"] = "application/json"
    error = assert_json_error(call_wsgi(app, environ), 413)
    assert "too large" in error["error"].lower()


def test_default_limit_is_100_mib() -> None:
    app = new_app()
    app.entrypoint(lambda payload: {"ok": True})
    environ = EnvironBuilder(path="/invocations", method="POST").get_environ()
    environ["wsgi.input"] = Exploding()
    environ["CONTENT_LENGTH"] = str(100 * 1024 * 1024 + 1)
    assert_json_error(call_wsgi(app, environ), 413)
    assert FlaskTarget(app).invoke({"small": True}).json() == {"ok": True}


def test_chunked_body_over_the_limit_is_413_after_reading_at_most_the_limit() -> None:
    limit = 200_000
    app = new_app(max_body_size=limit)
    app.entrypoint(lambda payload: {"ok": True})
    body = Endless()
    environ = EnvironBuilder(path="/invocations", method="POST").get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    environ["wsgi.input"] = body
    assert_json_error(call_wsgi(app, environ), 413)
    assert limit < body.consumed <= limit + 65536


def test_no_entrypoint_is_500() -> None:
    reply = FlaskTarget(new_app()).invoke({"a": 1})
    assert assert_json_error(reply, 500) == {"error": "No entrypoint defined"}


def test_handler_traceback_goes_to_the_log_not_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = new_app()

    @app.entrypoint
    def broken(payload):
        raise KeyError("secret-detail")

    caplog.set_level(logging.INFO)
    reply = FlaskTarget(app).invoke({})
    assert reply.status == 500
    assert b"Traceback" not in reply.body and b"broken" not in reply.body
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is KeyError]
    assert failures, "the traceback of the handler's error is logged"


def test_ping_never_answers_5xx(monkeypatch: pytest.MonkeyPatch) -> None:
    app = new_app()
    target = FlaskTarget(app)

    def broken() -> Any:
        raise RuntimeError("status computation failed")

    # White-box: make the status computation itself fail.
    monkeypatch.setattr(app.runtime.ping_status, "snapshot", broken)
    reply = target.ping()
    assert reply.status == 200
    assert reply.json()["status"] == "Healthy"
    assert type(reply.json()["time_of_last_update"]) is int


def test_ping_with_custom_function_raising_answers_200() -> None:
    app = new_app()

    @app.ping
    def custom():
        raise RuntimeError("dependency down")

    reply = FlaskTarget(app).ping()
    assert reply.status == 200
    assert reply.json()["status"] == "Healthy"


def test_handler_with_and_without_context() -> None:
    seen: list[Any] = []
    app = new_app()

    @app.entrypoint
    def with_context(payload, context):
        seen.append(context)
        # Background work of the request's own (a plain thread, which does not
        # inherit the request's context) reads the request through the context.
        outside: list[Any] = []

        def read_later() -> None:
            try:
                outside.append(context.request.headers.get(SESSION))
            except Exception as exc:
                outside.append(exc)

        thread = threading.Thread(target=read_later)
        thread.start()
        thread.join(5)
        return {"in_handler": isinstance(context.request, flask.Request), "outside": repr(outside)}

    reply = FlaskTarget(app).invoke({}, {SESSION: "s1"})
    assert isinstance(seen[0], RequestContext)
    assert seen[0].session_id == "s1"
    # RequestContext.request is the Flask request object itself, usable outside
    # the WSGI thread's request context (not Flask's context-local proxy).
    assert reply.json() == {"in_handler": True, "outside": repr(["s1"])}
    assert isinstance(seen[0].request, flask.Request)
    assert seen[0].request.headers[SESSION] == "s1"

    app2 = new_app()

    @app2.entrypoint
    def payload_only(payload, ctx=None):
        seen.append(("payload_only", ctx))
        return {"ok": True}

    FlaskTarget(app2).invoke({})
    assert seen[-1] == ("payload_only", None)


class Agent:
    def __init__(self) -> None:
        self.greeting = "hi"

    def handle(self, payload, context):
        return {"greeting": self.greeting, "session": context.session_id}

    async def handle_async(self, payload):
        return {"loop_thread": threading.current_thread().name, "payload": payload}


class SyncCallable:
    def __call__(self, payload):
        return {"callable": payload}


class AsyncCallable:
    async def __call__(self, payload, context):
        await asyncio.sleep(0)
        return {"async_callable": payload, "in_loop": _in_loop()}


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _partial_target(prefix, payload):
    await asyncio.sleep(0)
    return {"partial": prefix, "payload": payload, "in_loop": _in_loop()}


def _sync_partial_target(prefix, payload):
    return {"partial": prefix, "payload": payload, "in_loop": _in_loop()}


@pytest.mark.parametrize(
    ("make_handler", "expected"),
    [
        (lambda: Agent().handle, {"greeting": "hi", "session": "s9"}),
        (lambda: SyncCallable(), {"callable": {"n": 1}}),
        (lambda: AsyncCallable(), {"async_callable": {"n": 1}, "in_loop": True}),
        (
            lambda: functools.partial(_partial_target, "p"),
            {"partial": "p", "payload": {"n": 1}, "in_loop": True},
        ),
        (
            lambda: functools.partial(functools.partial(_partial_target, "pp")),
            {"partial": "pp", "payload": {"n": 1}, "in_loop": True},
        ),
        (
            lambda: functools.partial(_sync_partial_target, "s"),
            {"partial": "s", "payload": {"n": 1}, "in_loop": False},
        ),
    ],
    ids=["bound-method", "callable", "async-callable", "partial", "nested-partial", "sync-partial"],
)
def test_handler_kinds(make_handler: Callable[[], Any], expected: dict[str, Any]) -> None:
    app = new_app()
    app.entrypoint(make_handler())
    reply = FlaskTarget(app).invoke({"n": 1}, {SESSION: "s9"})
    assert reply.status == 200, reply.body
    assert reply.json() == expected


def test_async_bound_method_runs_on_the_runtime_loop() -> None:
    app = new_app()
    app.entrypoint(Agent().handle_async)
    body = FlaskTarget(app).invoke({"n": 2}).json()
    assert body["payload"] == {"n": 2}
    assert body["loop_thread"] != threading.current_thread().name


def test_async_generator_handler_streams() -> None:
    app = new_app()

    @app.entrypoint
    async def stream(payload):
        for i in range(payload["n"]):
            await asyncio.sleep(0)
            yield {"i": i, "request_id": BedrockAgentCoreContext.get_request_id()}

    reply = FlaskTarget(app).invoke({"n": 3}, {REQUEST_ID: "rid-stream"})
    assert reply.content_type == "text/event-stream"
    assert reply.events() == [{"i": i, "request_id": "rid-stream"} for i in range(3)]


def test_generator_handler_streams() -> None:
    app = new_app()

    @app.entrypoint
    def stream(payload, context):
        for i in range(payload["n"]):
            yield {"i": i, "session": context.session_id}

    reply = FlaskTarget(app).invoke({"n": 3}, {SESSION: "sess-gen"})
    assert reply.content_type == "text/event-stream"
    assert reply.events() == [{"i": i, "session": "sess-gen"} for i in range(3)]


def test_stream_items_are_sent_as_produced_in_process() -> None:
    client = contract_app.app.test_client()
    started = time.monotonic()
    response = client.post(
        "/invocations", json={"action": "slow_stream", "count": 3, "interval": 0.5}, buffered=False
    )
    chunks = iter(response.response)
    first = next(chunks)
    first_at = time.monotonic() - started
    rest = b"".join(chunks)
    response.close()
    assert first.startswith(b"data: ")
    assert first_at < 0.4
    events = parse_sse(first + rest)
    assert [event["i"] for event in events] == [0, 1, 2]


# -- debug actions ------------------------------------------------------------


def test_debug_actions_with_debug_true() -> None:
    app = new_app(debug=True)
    calls: list[Any] = []
    app.entrypoint(lambda payload: calls.append(payload) or {"handled": True})
    target = FlaskTarget(app)

    def action(name: str) -> Reply:
        return target.invoke({"_agent_core_app_action": name})

    body = action("ping_status").json()
    assert body["status"] == "Healthy" and type(body["time_of_last_update"]) is int

    task_id = app.add_async_task("debug-job", {"k": "v"})
    info = action("job_status").json()
    assert info["active_count"] == 1
    assert info["running_jobs"][0]["name"] == "debug-job"
    assert action("ping_status").json()["status"] == "HealthyBusy"
    app.complete_async_task(task_id)

    assert action("force_busy").json() == {"forced_status": "HealthyBusy"}
    assert target.ping().json()["status"] == "HealthyBusy"
    assert action("force_healthy").json() == {"forced_status": "Healthy"}
    app.add_async_task("ignored-while-forced")
    assert target.ping().json()["status"] == "Healthy"
    assert action("clear_forced_status").json() == {"forced_status": "Cleared"}
    assert target.ping().json()["status"] == "HealthyBusy"

    reply = action("no_such_action")
    assert assert_json_error(reply, 400) == {"error": "Unknown action: no_such_action"}
    assert calls == []
    # A payload without the key still reaches the handler.
    assert target.invoke({"x": 1}).json() == {"handled": True}
    assert calls == [{"x": 1}]


def test_debug_actions_ignored_without_debug() -> None:
    app = new_app()
    app.entrypoint(lambda payload: {"handled": payload})
    target = FlaskTarget(app)
    reply = target.invoke({"_agent_core_app_action": "force_busy"})
    assert reply.json() == {"handled": {"_agent_core_app_action": "force_busy"}}
    assert target.ping().json()["status"] == "Healthy"
    assert app.get_current_ping_status() is PingStatus.HEALTHY


# -- coroutine handlers and the runtime's event loop --------------------------


def test_coroutine_handlers_share_one_runtime_loop_off_the_wsgi_thread() -> None:
    app = new_app()

    @app.entrypoint
    async def where(payload):
        await asyncio.sleep(0)
        return {
            "loop": id(asyncio.get_running_loop()),
            "thread": threading.get_ident(),
            "request_id": BedrockAgentCoreContext.get_request_id(),
            "session_id": BedrockAgentCoreContext.get_session_id(),
        }

    target = FlaskTarget(app)
    replies = [target.invoke({}, {REQUEST_ID: f"r{i}", SESSION: f"s{i}"}).json() for i in range(3)]

    # Also from other WSGI threads, at once.
    concurrent: list[dict[str, Any]] = []

    def call(i: int) -> None:
        concurrent.append(
            FlaskTarget(app).invoke({}, {REQUEST_ID: f"t{i}", SESSION: f"ts{i}"}).json()
        )

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    everything = replies + concurrent
    assert len(everything) == 7
    assert len({reply["loop"] for reply in everything}) == 1
    assert len({reply["thread"] for reply in everything}) == 1
    assert everything[0]["thread"] != threading.get_ident()
    for i, reply in enumerate(replies):
        assert (reply["request_id"], reply["session_id"]) == (f"r{i}", f"s{i}")
    assert {(r["request_id"], r["session_id"]) for r in concurrent} == {
        (f"t{i}", f"ts{i}") for i in range(4)
    }


def test_create_task_work_goes_on_after_the_handler_returns() -> None:
    app = new_app()
    done = threading.Event()
    seen: dict[str, Any] = {}

    @app.async_task
    async def background(delay):
        await asyncio.sleep(delay)
        seen["request_id"] = BedrockAgentCoreContext.get_request_id()
        seen["session_id"] = BedrockAgentCoreContext.get_session_id()
        done.set()

    @app.entrypoint
    async def start(payload):
        asyncio.create_task(background(0.3))  # noqa: RUF006 - the official SDK's pattern
        return {"status": "started"}

    target = FlaskTarget(app)
    reply = target.invoke({}, {REQUEST_ID: "bg-req", SESSION: "bg-sess"})
    assert reply.json() == {"status": "started"}
    assert not done.is_set()
    wait_until(lambda: target.ping().json()["status"] == "HealthyBusy", timeout=2)
    assert done.wait(5), "the created task kept running after the handler returned"
    assert seen == {"request_id": "bg-req", "session_id": "bg-sess"}
    wait_healthy(target)


def test_request_ids_do_not_leak_between_requests() -> None:
    app = new_app()
    app.entrypoint(lambda payload: {"session": BedrockAgentCoreContext.get_session_id()})
    target = FlaskTarget(app)
    assert target.invoke({}, {SESSION: "first"}).json() == {"session": "first"}
    assert target.invoke({}).json() == {"session": None}


# -- mounting into an existing Flask app --------------------------------------


@pytest.mark.parametrize("prefix", ["", "/agent", "/deep/agent"])
def test_blueprint_serves_the_contract_in_an_existing_app(prefix: str) -> None:
    existing = flask.Flask("existing")
    hooks: list[str] = []

    @existing.before_request
    def hook():
        hooks.append(flask.request.path)

    @existing.route("/hello")
    def hello():
        return "hello"

    agent = AgentCore(configure_logging=False)

    @agent.entrypoint
    async def handler(payload, context):
        return {"got": payload, "session": context.session_id}

    existing.register_blueprint(agent.blueprint, url_prefix=prefix or None)
    client = existing.test_client()

    ping = client.get(f"{prefix}/ping")
    assert ping.status_code == 200 and ping.json["status"] == "Healthy"
    reply = client.post(f"{prefix}/invocations", json={"a": 1}, headers={SESSION: "mounted"})
    assert reply.status_code == 200
    assert reply.json == {"got": {"a": 1}, "session": "mounted"}
    assert client.get("/hello").data == b"hello"
    assert f"{prefix}/ping" in hooks and f"{prefix}/invocations" in hooks

    bad = client.post(f"{prefix}/invocations", data=b"{oops", content_type="application/json")
    assert bad.status_code == 400 and bad.json["error"] == "Invalid JSON"
    wrong = client.get(f"{prefix}/invocations")
    assert wrong.status_code == 405 and wrong.is_json

    task_id = agent.add_async_task("mounted-task")
    assert client.get(f"{prefix}/ping").json["status"] == "HealthyBusy"
    assert agent.complete_async_task(task_id) is True
    assert client.get(f"{prefix}/ping").json["status"] == "Healthy"
    if prefix:
        assert client.get("/ping").status_code == 404


def test_flask_hooks_and_middleware_apply_to_the_app() -> None:
    app = new_app()
    app.entrypoint(lambda payload: {"ok": True})
    order: list[str] = []

    @app.before_request
    def before():
        order.append("before")

    @app.after_request
    def after(response):
        response.headers["X-After"] = "1"
        return response

    inner = app.wsgi_app

    def middleware(environ, start_response):
        order.append("middleware")
        return inner(environ, start_response)

    app.wsgi_app = middleware  # type: ignore[method-assign]
    target = FlaskTarget(app)
    assert target.invoke({}).headers["x-after"] == "1"
    assert target.ping().headers["x-after"] == "1"
    assert order == ["middleware", "before", "middleware", "before"]


# -- streaming and busy state in-process --------------------------------------


def test_streamed_async_task_generator_is_busy_until_closed() -> None:
    app = new_app()

    @app.async_task
    async def numbers(n):
        for i in range(n):
            await asyncio.sleep(0.01)
            yield {"i": i}

    @app.entrypoint
    def handler(payload):
        return numbers(payload["n"])

    client = app.test_client()
    response = client.post("/invocations", json={"n": 1000}, buffered=False)
    chunks: Iterator[bytes] = iter(response.response)
    assert next(chunks).startswith(b"data: ")
    assert app.get_current_ping_status() is PingStatus.HEALTHY_BUSY
    response.close()
    assert app.get_current_ping_status() is PingStatus.HEALTHY
    assert app.get_async_task_info()["active_count"] == 0

    full = FlaskTarget(app).invoke({"n": 3})
    assert full.events() == [{"i": i} for i in range(3)]
    assert app.get_async_task_info()["active_count"] == 0


def test_coroutine_handler_errors_responses_and_flask_request() -> None:
    app = new_app()

    @app.entrypoint
    async def handler(payload):
        await asyncio.sleep(0)
        action = payload["action"]
        if action == "raise":
            raise ValueError("async broke")
        if action == "teapot":
            flask.abort(418)
        if action == "response":
            return flask.Response("made", status=201, mimetype="text/plain")
        if action == "request":
            # The request's context goes with the coroutine to the loop thread.
            return {"session": flask.request.headers.get(SESSION), "path": flask.request.path}
        if action == "stream":

            async def items():
                yield {"i": 0}
                yield {"i": 1}

            return items()
        return {"unknown": action}

    target = FlaskTarget(app)
    reply = target.invoke({"action": "raise"})
    assert assert_json_error(reply, 500) == {"error": "async broke"}
    assert b"Traceback" not in reply.body
    assert_json_error(target.invoke({"action": "teapot"}), 418)
    reply = target.invoke({"action": "response"})
    assert (reply.status, reply.content_type, reply.body) == (201, "text/plain", b"made")
    reply = target.invoke({"action": "request"}, {SESSION: "on-loop"})
    assert reply.json() == {"session": "on-loop", "path": "/invocations"}
    reply = target.invoke({"action": "stream"})
    assert reply.content_type == "text/event-stream"
    assert reply.events() == [{"i": 0}, {"i": 1}]


def test_debug_mode_keeps_errors_json_without_traceback() -> None:
    app = new_app(debug=True)

    @app.entrypoint
    def handler(payload):
        raise RuntimeError("debug-mode failure")

    target = FlaskTarget(app)
    reply = target.invoke({})
    assert assert_json_error(reply, 500) == {"error": "debug-mode failure"}
    assert b"Traceback" not in reply.body
    assert_json_error(target.request("GET", "/nowhere"), 404)
    assert_json_error(target.request("GET", "/invocations"), 405)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_body_is_json_whatever_the_content_type(content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    reply = FlaskTarget(contract_app.app).request(
        "POST", "/invocations", b'{"action": "echo", "n": 1}', headers
    )
    assert reply.status == 200
    assert reply.json() == {"echo": {"action": "echo", "n": 1}}


@pytest.mark.unit
def test_the_activity_route_answers_this_machine_only() -> None:
    """``GET /_agentcore_sync/activity``: what ``monitor`` and ``emulate`` read without an
    invocation; to any other client the route does not exist."""
    app = BedrockAgentCoreApp(configure_logging=False)
    release = threading.Event()

    @app.async_task
    def slow_job() -> None:
        release.wait(5)

    @app.entrypoint
    def handler(payload: Any) -> Any:
        slow_job.start()
        return {"started": True}

    client = app.test_client()
    assert client.post("/invocations", json={}).json == {"started": True}
    for address in ("127.0.0.1", "::1"):
        activity = client.get(
            "/_agentcore_sync/activity", environ_base={"REMOTE_ADDR": address}
        ).json
        assert activity["active_count"] == 1
        assert [job["name"] for job in activity["running_jobs"]] == ["slow_job"]
        assert activity["invocations_admitted"] == 1
        assert activity["invocations_in_flight"] == 0
    release.set()
    for address in ("10.0.0.7", "203.0.113.9", ""):
        reply = client.get("/_agentcore_sync/activity", environ_base={"REMOTE_ADDR": address})
        assert (reply.status_code, reply.json) == (404, {"error": "Not Found"})
