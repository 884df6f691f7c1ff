"""One agent file on the official SDK and on agentcore_sync: the same requests, the same answers.

``tests/sdk_diff/diff_agent.py`` is written as an SDK user writes an agent; it
imports the runtime from ``agent_runtime``, the SDK's (``sdk_side``) or ours
(``ours_side``). Three real servers run it, each started the way its users
start it: the SDK's ``app.run()`` (uvicorn), and agentcore_sync's ``app.run()``
(waitress) and gunicorn with the shipped settings. Every scenario sends the
same requests to the SDK and to one of ours and compares status, content type,
the headers an agent decides, the body (JSON parsed, SSE split into events) and
``/ping``.

Where the answers differ on purpose, ``INTENDED`` names the difference and its
reason, and the test asserts both sides of it: the SDK's answer is this, ours
is that. Anything else that differs is a bug.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import servers
from conftest import running_in_ci

pytestmark = [pytest.mark.e2e, pytest.mark.contract]

DIFF = Path(__file__).resolve().parent / "sdk_diff"
SESSION = "differential-session-0123456789abcdef-0"
REQUEST_ID = "6f1c1c7e-2a54-4a7e-9a4b-1f0e5c7d9a10"


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        reason = f"the differential test needs {module} (pip install -e '.[test]'): {exc}"
        if running_in_ci():
            pytest.fail(reason + "; CI=true, so this is a failure, not a skip.")
        pytest.skip(reason)


# -- the servers -------------------------------------------------------------------


def _server(side: str, argv: list[str], tmp: Path) -> servers.Server:
    port = servers.free_port()
    env = servers._env(
        {
            "PYTHONPATH": os.pathsep.join(
                [str(DIFF / f"{side}_side"), str(DIFF), str(servers.ROOT)]
            ),
            "PORT": str(port),
            "HOST": "127.0.0.1",
        },
        tmp,
    )
    argv = [arg.replace("{port}", str(port)) for arg in argv]
    return servers.Server(argv, port, env, tmp / f"{side}-{port}.log", DIFF)


APP_RUN = [servers.sys.executable, "diff_agent.py"]
GUNICORN = [
    servers.sys.executable, "-m", "gunicorn", "-c", "python:agentcore_sync.servers.gunicorn_config",
    "--bind", "127.0.0.1:{port}", "diff_agent:app",
]  # fmt: skip


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    for module in ("bedrock_agentcore", "uvicorn", "starlette", "websocket"):
        _require(module)
    with servers.serving(_server("sdk", APP_RUN, tmp_path_factory.mktemp("sdk"))) as server:
        yield server


@pytest.fixture(scope="module", params=["waitress", "gunicorn"])
def ours(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Server]:
    for module in ("starlette", "websocket"):
        _require(module)
    argv = APP_RUN if request.param == "waitress" else GUNICORN
    tmp = tmp_path_factory.mktemp(request.param)
    with servers.serving(_server("ours", argv, tmp)) as server:
        server.kind = request.param  # type: ignore[attr-defined]
        yield server


# -- what is compared --------------------------------------------------------------

#: Headers that the agent decides (the rest are the server's own: Date, Server...).
AGENT_HEADERS = ("x-diff-middleware", "x-agent", "www-authenticate", "cache-control")
#: Keys whose values differ from run to run, replaced by their kind.
VOLATILE = {"time_of_last_update", "task_id", "duration", "context_request_id", "sdk_request_id"}


def _normal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: f"<{k}>" if k in VOLATILE else _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    headers: tuple[tuple[str, str], ...]
    body: Any


def answer_of(reply: requests.Response) -> Answer:
    content_type = reply.headers.get("content-type", "")
    headers = tuple((h, reply.headers[h]) for h in AGENT_HEADERS if h in reply.headers)
    body: Any = reply.content
    if content_type.startswith("application/json"):
        body = _normal(json.loads(reply.content))
    elif content_type.startswith("text/event-stream"):
        body = [
            _normal(json.loads(line[len("data: ") :]))
            for line in reply.text.split("\n")
            if line.startswith("data: ")
        ]
    return Answer(reply.status_code, content_type, headers, body)


@dataclass(frozen=True)
class Step:
    """One request: ``payload`` is sent as JSON unless ``data`` is given."""

    method: str = "POST"
    path: str = "/invocations"
    payload: Any = None
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def invoke(payload: Any, **headers: str) -> Step:
    return Step(payload=payload, headers=headers)


PING = Step("GET", "/ping")


def send(server: servers.Server, step: Step) -> Answer:
    headers = {"Content-Type": "application/json", **step.headers}
    data = step.data if step.data is not None else json.dumps(step.payload).encode()
    if step.method in ("GET", "HEAD"):
        data = None
    reply = requests.request(
        step.method, server.url + step.path, data=data, headers=headers, timeout=10
    )
    return answer_of(reply)


Scenario = list[Step] | Callable[[servers.Server], Any]

CONTEXT_HEADERS = {
    "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": SESSION,
    "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id": REQUEST_ID,
    "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Tenant": "acme",
    "Authorization": "Bearer abc",
    "X-Custom-Trace": "t-1",
    "Accept-Language": "fr",
}
IDENTITY_HEADERS = {
    "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": SESSION,
    "WorkloadAccessToken": "wat-token-1",
    "OAuth2CallbackUrl": "https://example.com/callback",
}
BUNDLE = "arn:aws:bedrock-agentcore:us-east-1:123456789012:configuration-bundle/b-1"


def tasks_keep_the_agent_busy(server: servers.Server) -> list[Answer]:
    """A task added by hand keeps the agent busy until it is completed; an unknown
    id is refused. (The id itself differs from run to run: it is sent back as given.)"""
    started = requests.post(
        server.url + "/invocations", json={"action": "add_task", "name": "manual"}, timeout=10
    )
    task_id = started.json()["task_id"]
    return [
        answer_of(started),
        send(server, PING),
        send(server, invoke({"action": "task_info"})),
        send(server, invoke({"action": "complete_task", "task_id": task_id})),
        send(server, invoke({"action": "complete_task", "task_id": task_id})),
        send(server, PING),
        send(server, invoke({"action": "task_info"})),
    ]


def answer_of_json(body: Any) -> Answer:
    return Answer(200, "application/json", (), _normal(body))


def websocket_exchange(messages: list[dict[str, Any]]) -> Callable[[servers.Server], Any]:
    """Send each message on ``/ws`` and read one frame back: text (JSON parsed where it
    is JSON), bytes, or the close frame's code. A refused upgrade is its status and body."""

    def exchange(server: servers.Server) -> list[Any]:
        import websocket

        url = server.url.replace("http://", "ws://") + "/ws"
        header = [f"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id: {SESSION}"]
        try:
            ws = websocket.create_connection(url, header=header, timeout=10)
        except websocket.WebSocketBadStatusException as refused:
            body = json.loads(refused.resp_body) if refused.resp_body else None
            return [("refused", refused.status_code, body)]
        frames: list[Any] = []
        try:
            for message in messages:
                ws.send(json.dumps(message))
                opcode, data = ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    frames.append(("close", struct.unpack("!H", data[:2])[0]))
                    break
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    frames.append(("bytes", data))
                    continue
                text = data.decode()
                try:
                    frames.append(("json", json.loads(text)))
                except ValueError:
                    frames.append(("text", text))
        finally:
            ws.close()
        return frames

    return exchange


TASK_LINE = re.compile(
    r"Async task (started|completed): (\w+) \(ID: -?\d+(, Duration: \d+\.\d\ds)?\)"
)


def task_log_lines(server: servers.Server) -> list[str]:
    """The task lifecycle lines the agent logs, at INFO, for a task added and completed."""
    name = f"logged_{server.port}"
    task_id = requests.post(
        server.url + "/invocations", json={"action": "add_task", "name": name}, timeout=10
    ).json()["task_id"]
    send(server, invoke({"action": "complete_task", "task_id": task_id}))

    def lines() -> list[str]:
        found = [m.group(0) for m in TASK_LINE.finditer(server.log()) if m.group(2) == name]
        return [re.sub(r"ID: -?\d+", "ID: <id>", re.sub(r"\d+\.\d\ds", "<s>", f)) for f in found]

    deadline = time.monotonic() + 5
    while len(lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # ours writes them from a thread of its own, shortly after
    return [line.replace(name, "<name>") for line in lines()]


def error_log_record(server: servers.Server) -> dict[str, Any]:
    """The JSON log record of a handler's error: its fields and what they say. (The
    logger's name is each library's own.)"""
    request_id = f"error-record-{server.port}-{time.monotonic_ns()}"
    headers = {"X-Amzn-Bedrock-AgentCore-Runtime-Request-Id": request_id}
    assert send(server, invoke({"action": "raise"}, **headers)).status == 500
    records = [
        json.loads(line)
        for line in server.log().splitlines()
        if line.startswith("{") and request_id in line and '"ERROR"' in line
    ]
    assert len(records) == 1, server.log()[-2000:]
    record = records[0]
    return {
        "fields": sorted(set(record) - {"logger"}),
        "message": re.sub(r"\d+\.\d+s", "<s>", record["message"]),
        "errorType": record["errorType"],
        "errorMessage": record["errorMessage"],
        "stackTrace ends with": record["stackTrace"][-1],
    }


SCENARIOS: dict[str, Scenario] = {
    # JSON answers
    "json_dict": [invoke({"action": "echo", "value": {"a": 1, "b": [1, 2]}})],
    "json_list": [invoke({"action": "list"})],
    "json_str": [invoke({"action": "text"})],
    "json_none": [invoke({"action": "none"})],
    "json_int": [invoke({"action": "number"})],
    "json_float": [invoke({"action": "float"})],
    "json_bool": [invoke({"action": "bool"})],
    "json_unicode": [invoke({"action": "unicode"})],
    "json_pydantic": [invoke({"action": "pydantic"})],
    "json_dataclass": [invoke({"action": "dataclass"})],
    "json_nested": [invoke({"action": "nested"})],
    "payload_not_an_object": [invoke([1, 2, 3]), invoke("just a string"), invoke(7)],
    # SSE
    "sse_generator": [invoke({"action": "stream"})],
    "sse_async_generator": [invoke({"action": "async_stream"})],
    "sse_strings": [invoke({"action": "stream_strings"})],
    "sse_error_mid_stream": [invoke({"action": "stream_fail"})],
    "sse_empty": [invoke({"action": "stream_empty"})],
    # errors
    "handler_raises": [invoke({"action": "raise"})],
    "handler_raises_key_error": [invoke({"action": "raise_key"})],
    "body_not_json": [Step(data=b"{not json")],
    "body_not_utf8": [Step(data=b'{"a": "\xff\xfe"}')],
    "body_empty": [Step(data=b"")],
    "get_invocations": [Step("GET", "/invocations")],
    "post_ping": [Step("POST", "/ping", payload={})],
    "unknown_route": [Step("GET", "/nowhere")],
    # headers and context
    "context_headers": [invoke({"action": "context"}, **CONTEXT_HEADERS)],
    "context_without_headers": [invoke({"action": "context"})],
    "identity": [invoke({"action": "identity"}, **IDENTITY_HEADERS)],
    "identity_absent": [invoke({"action": "identity"})],
    "config_bundle": [
        invoke(
            {"action": "bundle"},
            baggage=f"aws.agentcore.configbundle_arn={BUNDLE},aws.agentcore.configbundle_version=3",
        )
    ],
    "config_bundle_absent": [invoke({"action": "bundle"})],
    "user_thread": [invoke({"action": "thread"})],
    # debug actions, custom ping, tasks
    "ping": [PING],
    "debug_ping_status": [invoke({"_agent_core_app_action": "ping_status"})],
    "debug_job_status": [invoke({"_agent_core_app_action": "job_status"})],
    "debug_force_busy_then_clear": [
        invoke({"_agent_core_app_action": "force_busy"}),
        PING,
        invoke({"action": "status"}),
        invoke({"_agent_core_app_action": "clear_forced_status"}),
        PING,
    ],
    "debug_force_healthy": [
        invoke({"_agent_core_app_action": "force_healthy"}),
        PING,
        invoke({"_agent_core_app_action": "clear_forced_status"}),
    ],
    "debug_unknown_action": [invoke({"_agent_core_app_action": "reboot"})],
    "custom_ping": [
        invoke({"action": "set_ping", "status": "HealthyBusy"}),
        PING,
        invoke({"action": "set_ping", "status": None}),
        PING,
    ],
    "tasks_keep_the_agent_busy": tasks_keep_the_agent_busy,
    # lifespan and middleware
    "lifespan_entered": [invoke({"action": "lifespan"})],
    "middleware_tags_answers": [invoke({"action": "echo"}), PING],
    "middleware_refuses": [invoke({"action": "echo"}, **{"X-Diff-Block": "1"})],
    # Starlette responses from the handler
    "starlette_json_404": [invoke({"action": "json_404"})],
    "starlette_plain": [invoke({"action": "plain_response"})],
    "starlette_html": [invoke({"action": "html_response"})],
    "starlette_streaming": [invoke({"action": "streaming_response"})],
    "starlette_http_exception": [invoke({"action": "http_exception"})],
    "starlette_http_exception_headers": [invoke({"action": "http_exception_headers"})],
    "session_id_too_long": [
        invoke({"action": "context"}, **{"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "s" * 300})
    ],
    "task_log_lines": task_log_lines,
    "error_log_record": error_log_record,
    # WebSocket
    "websocket_echo": websocket_exchange(
        [
            {"do": "echo", "x": 1},
            {"do": "text", "text": "hi"},
            {"do": "bytes", "text": "raw"},
            {"do": "context"},
        ]
    ),
    "websocket_handler_error": websocket_exchange([{"do": "echo"}, {"do": "fail"}]),
    "websocket_closed_by_the_handler": websocket_exchange([{"do": "close"}]),
}


def run(server: servers.Server, scenario: Scenario) -> Any:
    if callable(scenario):
        return scenario(server)
    return [send(server, step) for step in scenario]


# -- the differences on purpose ----------------------------------------------------


@dataclass(frozen=True)
class Intended:
    """A difference on purpose: why, what the SDK answers, and what ours answers
    (checked against the SDK's answer, so that the rest must still be the same)."""

    reason: str
    sdk: Callable[[Any], bool]
    ours: Callable[[Any, Any], bool]


def _without(answer: Answer, header: str) -> Answer:
    return Answer(
        answer.status,
        answer.content_type,
        tuple(h for h in answer.headers if h[0] != header),
        answer.body,
    )


def _headers(answer: Answer) -> dict[str, str]:
    return dict(answer.headers)


SSE_HEADERS = Intended(
    "an SSE answer carries Cache-Control: no-cache (and X-Accel-Buffering: no), so that "
    "proxies pass the events through as they come; the SDK sends neither",
    sdk=lambda theirs: all("cache-control" not in _headers(a) for a in theirs),
    ours=lambda mine, theirs: (
        all(_headers(a).get("cache-control") == "no-cache" for a in mine)
        and [_without(a, "cache-control") for a in mine] == theirs
    ),
)


def _json_error(status: int) -> Intended:
    return Intended(
        "every error body is JSON (SPEC §3), also 404 and 405, so that a client parsing "
        "JSON never meets a text page; the SDK answers these in plain text",
        sdk=lambda theirs: (
            [(a.status, a.content_type) for a in theirs] == [(status, "text/plain; charset=utf-8")]
        ),
        ours=lambda mine, theirs: (
            [(a.status, a.content_type) for a in mine] == [(status, "application/json")]
            and isinstance(mine[0].body.get("error"), str)
        ),
    )


INTENDED: dict[str, Intended] = {
    "payload_not_an_object": Intended(
        "with debug=True the SDK looks for a debug action with payload.get() and answers "
        "500 for a payload that is a list, a string or a number; ours hands any JSON value "
        "to the handler (SPEC §3)",
        sdk=lambda theirs: (
            [a.status for a in theirs] == [500, 500, 500]
            and "has no attribute 'get'" in theirs[0].body["error"]
        ),
        ours=lambda mine, theirs: (
            [a.status for a in mine] == [200, 200, 200]
            and [a.body for a in mine] == [{"unknown": None}] * 3
        ),
    ),
    "sse_generator": SSE_HEADERS,
    "sse_async_generator": SSE_HEADERS,
    "sse_strings": SSE_HEADERS,
    "sse_error_mid_stream": SSE_HEADERS,
    "sse_empty": SSE_HEADERS,
    "get_invocations": _json_error(405),
    "post_ping": _json_error(405),
    "unknown_route": _json_error(404),
    "starlette_http_exception_headers": Intended(
        "the headers of a raised HTTPException (WWW-Authenticate, Retry-After) are sent, as "
        "Starlette's own handler and werkzeug's errors send them; the SDK drops them",
        sdk=lambda theirs: "www-authenticate" not in _headers(theirs[0]),
        ours=lambda mine, theirs: (
            _headers(mine[0]).get("www-authenticate") == "Bearer"
            and [_without(a, "www-authenticate") for a in mine] == theirs
        ),
    ),
    "session_id_too_long": Intended(
        "a session or request id that is not 1-256 visible ASCII characters is refused "
        "with 400 before it reaches a log line or a record; the SDK takes it",
        sdk=lambda theirs: theirs[0].status == 200 and theirs[0].body["session_id"] == "s" * 300,
        ours=lambda mine, theirs: (
            mine[0].status == 400 and "session" in mine[0].body["error"].lower()
        ),
    ),
}
for _name in ("websocket_echo", "websocket_handler_error", "websocket_closed_by_the_handler"):
    INTENDED[f"{_name}@waitress"] = Intended(
        "waitress cannot hand a connection's socket to the app: /ws answers 501 with a JSON "
        "error naming the gunicorn command; the SDK's uvicorn serves it (ours: gunicorn)",
        sdk=lambda theirs: bool(theirs) and theirs[0][0] != "refused",
        ours=lambda mine, theirs: (
            len(mine) == 1
            and mine[0][:2] == ("refused", 501)
            and "gunicorn" in json.dumps(mine[0][2])
        ),
    )


# -- the tests ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk_answers() -> dict[str, Any]:
    """The SDK's answer to each scenario, asked once (the SDK's state is shared)."""
    return {}


def sdk_answer(sdk: servers.Server, cache: dict[str, Any], name: str) -> Any:
    if name not in cache:
        cache[name] = run(sdk, SCENARIOS[name])
    return cache[name]


def test_there_are_at_least_forty_scenarios() -> None:
    assert len(SCENARIOS) >= 40


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_same_answers(
    sdk: servers.Server, ours: servers.Server, sdk_answers: dict[str, Any], name: str
) -> None:
    theirs = sdk_answer(sdk, sdk_answers, name)
    mine = run(ours, SCENARIOS[name])
    intended = INTENDED.get(f"{name}@{ours.kind}") or INTENDED.get(name)  # type: ignore[attr-defined]
    if intended is None:
        assert mine == theirs
        return
    assert intended.sdk(theirs), (
        f"the SDK no longer answers as INTENDED says ({intended.reason}): {theirs}"
    )
    assert intended.ours(mine, theirs), f"{intended.reason}; ours answered {mine}, the SDK {theirs}"
