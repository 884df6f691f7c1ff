"""The request context as the official SDK 1.25 gives it (SPEC §3).

Side by side with the SDK itself: its app, driven in-process through ASGI, and
ours, given the same headers, must build the same ``request_headers`` and read
the same configuration bundle reference from ``baggage``. The SDK's own
``BedrockAgentCoreContext`` is filled for each request and the work it starts,
so that its identity decorators and token forwarding find the workload access
token on a real gunicorn server (its AWS endpoints pointed at a fake the test
runs). And ``copy_request_context`` carries the context into users' threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import servers
from test_logging import json_lines  # noqa: F401 - the fixture, shared

from agentcore_sync import BedrockAgentCoreApp, BedrockAgentCoreContext, copy_request_context
from agentcore_sync.core import bundles

sdk_runtime = pytest.importorskip("bedrock_agentcore.runtime")
SdkApp = sdk_runtime.BedrockAgentCoreApp
SdkContext = sdk_runtime.BedrockAgentCoreContext

SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_ID = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
BUNDLE_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:configuration-bundle/bundle-1"
RUNTIME_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent-1"

HEADERS = [
    (SESSION, "session-1"),
    (REQUEST_ID, "request-1"),
    ("AUTHORIZATION", "Bearer abc"),
    ("X-Amzn-Bedrock-AgentCore-Runtime-Custom-ClientId", "client-1"),
    ("X-Amz-Bedrock-AgentCore-Identity-WAT", "wat-1"),
    ("WorkloadAccessToken", "token-1"),
    ("OAuth2CallbackUrl", "https://example.com/callback"),
    ("X-Agent-Flavour", "vanilla"),
    ("Baggage", f"aws.agentcore.configbundle_arn={BUNDLE_ARN}"),
    ("Accept-Language", "en"),
    ("Cookie", "a=b"),
    ("X-Forwarded-For", "10.0.0.1"),
    ("X-Amzn-Trace-Id", "Root=1-abc"),
    ("X-Amz-Date", "20240101T000000Z"),
    ("Content-Type", "application/json"),
]


def sdk_answer(app: Any, headers: list[tuple[str, str]], payload: Any) -> Any:
    """POST /invocations to the SDK's ASGI app in-process, as uvicorn would hand it over
    (header names lower-cased); its JSON answer."""
    body = json.dumps(payload).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200, sent
    return json.loads(b"".join(message.get("body", b"") for message in sent[1:]))


def our_answer(app: BedrockAgentCoreApp, headers: list[tuple[str, str]], payload: Any) -> Any:
    reply = app.test_client().post("/invocations", data=json.dumps(payload), headers=headers)
    assert reply.status_code == 200, reply.data
    return reply.json


def context_handler(context_class: Any) -> Any:
    """One handler for both apps: what ``context_class`` and the context say."""

    def handler(payload: Any, context: Any) -> dict[str, Any]:
        ref = context_class.get_config_bundle_ref()
        return {
            "request_headers": context.request_headers,
            "session_id": context.session_id,
            "ctx_session_id": context_class.get_session_id(),
            "ctx_request_id": context_class.get_request_id(),
            "token": context_class.get_workload_access_token(),
            "callback_url": context_class.get_oauth2_callback_url(),
            "ctx_headers": context_class.get_request_headers(),
            "bundle": None if ref is None else [ref.bundle_arn, ref.bundle_version, ref.bundle_id],
            "experiment": [
                context_class.get_routing_experiment_arn(),
                context_class.get_routing_experiment_variant(),
            ],
        }

    return handler


@pytest.fixture(scope="module")
def apps() -> tuple[Any, BedrockAgentCoreApp]:
    sdk = SdkApp()
    sdk.entrypoint(context_handler(SdkContext))
    ours = BedrockAgentCoreApp(configure_logging=False)
    ours.entrypoint(context_handler(BedrockAgentCoreContext))
    return sdk, ours


@pytest.mark.unit
def test_request_headers_and_ids_as_the_sdk_builds_them(apps: Any) -> None:
    sdk, ours = apps
    expected = sdk_answer(sdk, HEADERS, {})
    answer = our_answer(ours, HEADERS, {})
    assert answer == expected
    # What the comparison covers, so that it cannot pass on two empty answers.
    assert answer["request_headers"] == {
        "Authorization": "Bearer abc",
        "x-amzn-bedrock-agentcore-runtime-custom-clientid": "client-1",
        "x-amz-bedrock-agentcore-identity-wat": "wat-1",
        "workloadaccesstoken": "token-1",
        "oauth2callbackurl": "https://example.com/callback",
        "x-agent-flavour": "vanilla",
        "baggage": f"aws.agentcore.configbundle_arn={BUNDLE_ARN}",
    }
    assert answer["ctx_headers"] == answer["request_headers"]
    assert (answer["ctx_session_id"], answer["ctx_request_id"]) == ("session-1", "request-1")
    assert answer["token"] == "wat-1", "the identity WAT header wins, as in the SDK"


BAGGAGE = [
    f"aws.agentcore.configbundle_arn={BUNDLE_ARN},aws.agentcore.configbundle_version=v1",
    " aws.agentcore.configbundle_version = v2;prop=1 , "
    f"aws.agentcore.configbundle_arn={BUNDLE_ARN}",
    "aws.agentcore.configbundle_arn=arn%3Aaws%3Ax%3Ay%2Fbundle-2,"
    "aws.agentcore.configbundle_version=v%203",
    f"aws.agentcore.configbundle_arn={BUNDLE_ARN},aws.agentcore.configbundle_version=v1,"
    "aws.agentcore.configbundle_version=v9",
    "aws.agentcore.configbundle_arn=no-slash,aws.agentcore.configbundle_version=v1",
    "aws.agentcore.configbundle_arn=arn:x/,aws.agentcore.configbundle_version=v1",
    f"aws.agentcore.configbundle_arn={BUNDLE_ARN}",
    f"aws.agentcore.configbundle_arn={BUNDLE_ARN},aws.agentcore.configbundle_version=",
    "garbage,=,novalue=,,;;",
    "aws.agentcore.gateway.routing_experiment_arn=arn%3Aexp%2F1,"
    "aws.agentcore.gateway.routing_experiment_variant_name=B;p",
    "",
]


@pytest.mark.unit
@pytest.mark.parametrize("baggage", BAGGAGE)
def test_baggage_read_as_the_sdk_reads_it(apps: Any, baggage: str) -> None:
    sdk, ours = apps
    headers = [("baggage", baggage)]
    expected = sdk_answer(sdk, headers, {})
    answer = our_answer(ours, headers, {})
    for key in ("bundle", "experiment"):
        assert answer[key] == expected[key], key


@pytest.mark.unit
def test_baggage_headers_sent_twice_are_read_as_one() -> None:
    # WSGI servers join repeated headers with commas; the SDK reads each in turn.
    first, second = (
        f"aws.agentcore.configbundle_arn={BUNDLE_ARN}",
        "aws.agentcore.configbundle_version=v1",
    )
    joined = bundles.read_baggage(f"{first}, {second}")
    assert joined.bundle_ref is not None
    assert (joined.bundle_ref.bundle_id, joined.bundle_ref.bundle_version) == ("bundle-1", "v1")


def public_class_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(getattr(cls, name))
        for name, value in vars(cls).items()
        if not name.startswith("_") and isinstance(value, classmethod)
    }


@pytest.mark.unit
def test_the_context_class_has_the_sdks_whole_public_api() -> None:
    sdk = public_class_methods(SdkContext)
    ours = public_class_methods(BedrockAgentCoreContext)
    assert len(sdk) >= 15
    assert sorted(set(sdk) - set(ours)) == []
    for name, signature in sdk.items():
        assert [(p.name, p.kind, p.default) for p in ours[name].parameters.values()] == [
            (p.name, p.kind, p.default) for p in signature.parameters.values()
        ], name


@pytest.mark.unit
def test_a_handler_reads_the_config_bundle_ref() -> None:
    app = BedrockAgentCoreApp(configure_logging=False)

    @app.entrypoint
    def handler(payload):
        ref = BedrockAgentCoreContext.get_config_bundle_ref()
        if ref is None:
            return {"ref": None, "config": BedrockAgentCoreContext.get_config_bundle()}
        return {"ref": [ref.bundle_id, ref.bundle_version]}

    baggage = f"aws.agentcore.configbundle_arn={BUNDLE_ARN},aws.agentcore.configbundle_version=v7"
    assert our_answer(app, [("baggage", baggage)], {}) == {"ref": ["bundle-1", "v7"]}
    assert our_answer(app, [], {}) == {"ref": None, "config": {}}


@pytest.mark.unit
def test_the_sdks_context_is_filled_per_request_and_cleared_for_the_next() -> None:
    app = BedrockAgentCoreApp(configure_logging=False)
    app.entrypoint(context_handler(SdkContext))
    first = our_answer(app, HEADERS, {})
    assert (first["token"], first["ctx_session_id"]) == ("wat-1", "session-1")
    assert first["bundle"] is None, "an ARN without a version is no reference"
    assert first["ctx_headers"]["Authorization"] == "Bearer abc"
    second = our_answer(app, [], {})
    assert second["token"] is None and second["ctx_session_id"] is None
    assert second["ctx_headers"] is None and second["callback_url"] is None
    assert second["ctx_request_id"] not in (None, "request-1")
    # Nor is anything left where the requests were served from.
    assert SdkContext.get_workload_access_token() is None
    assert BedrockAgentCoreContext.get_request_id() is None


@pytest.mark.unit
def test_coroutine_and_streaming_handlers_see_the_sdks_context() -> None:
    app = BedrockAgentCoreApp(configure_logging=False)

    @app.entrypoint
    async def handler(payload):
        if payload.get("stream"):
            return stream()
        await asyncio.sleep(0)
        return SdkContext.get_workload_access_token()

    async def stream():
        for _ in range(2):
            await asyncio.sleep(0)
            yield [SdkContext.get_workload_access_token(), SdkContext.get_session_id()]

    headers = {"WorkloadAccessToken": "token-a", SESSION: "session-a"}
    client = app.test_client()
    assert client.post("/invocations", json={}, headers=headers).json == "token-a"
    reply = client.post("/invocations", json={"stream": True}, headers=headers)
    assert reply.data == b'data: ["token-a", "session-a"]\n\n' * 2


@pytest.mark.unit
def test_setters_reach_the_sdks_context_too() -> None:
    app = BedrockAgentCoreApp(configure_logging=False)

    @app.entrypoint
    def handler(payload):
        BedrockAgentCoreContext.set_workload_access_token("set-by-hand")
        BedrockAgentCoreContext.set_request_headers({"x-a": "1"})
        return {
            "token": SdkContext.get_workload_access_token(),
            "headers": SdkContext.get_request_headers(),
        }

    assert our_answer(app, [], {}) == {"token": "set-by-hand", "headers": {"x-a": "1"}}


@pytest.mark.unit
def test_background_work_and_copied_threads_carry_both_contexts(
    json_lines: Any,  # noqa: F811 - test_logging's fixture
) -> None:
    if str(servers.APPS) not in sys.path:
        sys.path.insert(0, str(servers.APPS))
    import context_app

    client = context_app.app.test_client()
    headers = {SESSION: "session-t", REQUEST_ID: "request-t", "WorkloadAccessToken": "token-t"}
    tasks = client.post("/invocations", json={"action": "tasks"}, headers=headers).json
    for how in ("start", "submit", "coroutine"):
        seen = tasks[how]
        assert (seen["sdk_token"], seen["sdk_request_id"]) == ("token-t", "request-t"), how
        assert (seen["token"], seen["session_id"]) == ("token-t", "session-t"), how

    copied = client.post("/invocations", json={"action": "thread"}, headers=headers).json
    assert (copied["sdk_token"], copied["request_id"], copied["session_id"]) == (
        "token-t",
        "request-t",
        "session-t",
    )
    plain = client.post(
        "/invocations", json={"action": "thread", "copied": False}, headers=headers
    ).json
    assert plain["sdk_token"] is None and plain["request_id"] is None, "a plain thread has none"
    after = client.post("/invocations", json={"action": "thread"}).json
    assert after["sdk_token"] is None and after["session_id"] is None, "nothing leaks"
    assert after["request_id"] not in (None, "request-t")

    lines = [line for line in json_lines() if line["message"] == "working in my own thread"]
    assert [(line.get("requestId"), line.get("sessionId")) for line in lines] == [
        ("request-t", "session-t"),
        (None, None),
        (after["request_id"], None),
    ]


@pytest.mark.unit
def test_a_copied_function_may_run_in_two_threads_at_once() -> None:
    app = BedrockAgentCoreApp(configure_logging=False)
    both_in = threading.Barrier(2, timeout=10)

    def work() -> str | None:
        both_in.wait()  # both calls inside the copied context at the same time
        return BedrockAgentCoreContext.get_session_id()

    @app.entrypoint
    def handler(payload):
        copied = copy_request_context(work)
        results: list[str | None] = []
        threads = [threading.Thread(target=lambda: results.append(copied())) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    assert our_answer(app, [(SESSION, "s-2")], {}) == ["s-2", "s-2"]


@pytest.mark.e2e
def test_importing_agentcore_sync_does_not_import_the_sdk_and_works_without_it() -> None:
    script = """
import sys
import agentcore_sync
assert "bedrock_agentcore" not in sys.modules and "starlette" not in sys.modules
sys.modules["bedrock_agentcore"] = None  # as if it were not installed
app = agentcore_sync.BedrockAgentCoreApp(configure_logging=False)
app.entrypoint(lambda payload: agentcore_sync.BedrockAgentCoreContext.get_workload_access_token())
reply = app.test_client().post("/invocations", json={}, headers={"WorkloadAccessToken": "t"})
assert reply.json == "t", reply.data
assert "starlette" not in sys.modules
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=servers.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# -- a fake AWS for the SDK's clients ---------------------------------------------


class FakeAws:
    """Records every request; answers the calls these tests expect, 400 to any other."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()  # guards calls: appended by the server's threads
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                self.answer()

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                call = {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                call["body"] = json.loads(body) if body.startswith(b"{") else body.decode()
                with fake.lock:
                    fake.calls.append(call)
                status, answer = fake.route(call)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, call: dict[str, Any]) -> tuple[int, Any]:
        path = call["path"]
        if path == "/identities/api-key":
            return 200, {"apiKey": "key-for-" + call["body"]["workloadIdentityToken"]}
        if path.startswith("/runtimes/"):
            return 200, {}
        if path == "/configuration-bundles/bundle-1/versions/v1":
            components = {RUNTIME_ARN: {"configuration": {"model": "m-1"}}}
            return 200, {"bundleId": "bundle-1", "versionId": "v1", "components": components}
        return 400, {"message": "not faked"}

    def paths(self) -> list[str]:
        with self.lock:
            return [call["path"] for call in self.calls]


@pytest.fixture
def fake_aws() -> Iterator[FakeAws]:
    fake = FakeAws()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def aws_env(fake: FakeAws) -> dict[str, str]:
    return {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "BEDROCK_AGENTCORE_DP_ENDPOINT": fake.url,
        "BEDROCK_AGENTCORE_CP_ENDPOINT": fake.url,
    }


@pytest.mark.e2e
def test_get_config_bundle_fetches_once_per_version(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in aws_env(fake_aws).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", f"cloud.resource_id={RUNTIME_ARN}/runtime-endpoint/DEFAULT"
    )
    bundles._control_client.cache_clear()
    bundles.bundle_config.cache_clear()
    app = BedrockAgentCoreApp(configure_logging=False)

    @app.entrypoint
    def handler(payload):
        return [BedrockAgentCoreContext.get_config_bundle(), SdkContext.get_config_bundle()]

    baggage = f"aws.agentcore.configbundle_arn={BUNDLE_ARN},aws.agentcore.configbundle_version=v1"
    try:
        for _ in range(2):
            assert our_answer(app, [("baggage", baggage)], {}) == [{"model": "m-1"}] * 2
    finally:
        bundles._control_client.cache_clear()
        bundles.bundle_config.cache_clear()
    assert fake_aws.paths() == ["/configuration-bundles/bundle-1/versions/v1"]


@pytest.fixture
def gunicorn_server(fake_aws: FakeAws, tmp_path: Path) -> Iterator[servers.Server]:
    with servers.serving(
        servers.gunicorn("context_app:app", tmp_path, env=aws_env(fake_aws))
    ) as server:
        yield server


def invoke(server: servers.Server, payload: Any, headers: dict[str, str] | None = None) -> Any:
    reply = requests.post(f"{server.url}/invocations", json=payload, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.e2e
def test_the_sdks_identity_decorators_find_the_token_on_gunicorn(
    gunicorn_server: servers.Server, fake_aws: FakeAws
) -> None:
    token = {"WorkloadAccessToken": "wat-from-runtime", REQUEST_ID: "req-id-1"}
    seen = invoke(gunicorn_server, {"action": "seen"}, token)
    assert (seen["sdk_token"], seen["sdk_request_id"]) == ("wat-from-runtime", "req-id-1")
    assert (
        seen["sdk_headers"]
        == seen["context_headers"]
        == {"workloadaccesstoken": "wat-from-runtime"}
    )

    assert invoke(gunicorn_server, {"action": "wat"}, token) == {"wat": "wat-from-runtime"}
    # @requires_api_key hands the token to Identity; without it, it would have
    # created a local workload identity (a control-plane call) first.
    assert invoke(gunicorn_server, {"action": "api_key"}, token) == {
        "api_key": "key-for-wat-from-runtime"
    }
    assert fake_aws.paths() == ["/identities/api-key"]
    assert not (servers.ROOT / ".agentcore.json").exists()

    # The SDK's outbound forwarding puts the token on calls to other runtimes.
    assert invoke(gunicorn_server, {"action": "forward"}, token) == {"forwarded": True}
    (forwarded,) = [call for call in fake_aws.calls if call["path"].startswith("/runtimes/")]
    headers = {name.lower(): value for name, value in forwarded["headers"].items()}
    assert headers["x-amz-bedrock-agentcore-identity-wat"] == "wat-from-runtime"

    # The next request, without a token, finds none.
    assert invoke(gunicorn_server, {"action": "seen"})["sdk_token"] is None


@pytest.mark.e2e
def test_a_users_thread_logs_with_the_request_ids_on_gunicorn(
    gunicorn_server: servers.Server,
) -> None:
    headers = {SESSION: "session-g", REQUEST_ID: "request-g", "WorkloadAccessToken": "token-g"}
    seen = invoke(gunicorn_server, {"action": "thread"}, headers)
    assert (seen["request_id"], seen["session_id"], seen["sdk_token"]) == (
        "request-g",
        "session-g",
        "token-g",
    )
    assert invoke(gunicorn_server, {"action": "thread"})["session_id"] is None
    lines = []
    for line in gunicorn_server.log().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("message") == "working in my own thread":
                lines.append(entry)
    assert [(line.get("requestId"), line.get("sessionId")) for line in lines] == [
        ("request-g", "session-g"),
        (lines[-1].get("requestId"), None),
    ]
    assert lines[-1].get("requestId") not in (None, "request-g"), "its own, generated"
