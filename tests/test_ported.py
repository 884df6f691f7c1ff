"""Starlette responses and ``HTTPException`` from a handler ported from the official SDK.

``tests/apps/ported_app.py`` returns each kind of Starlette response (or raises
``HTTPException``); this runtime on real gunicorn and waitress servers must send
what the official SDK sends for it on uvicorn: ``EXPECTED`` is what the SDK
1.25.0 sent, and when the SDK and uvicorn are installed the same file is served
by the SDK too and both answers are compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import servers

pytest.importorskip("starlette")

pytestmark = pytest.mark.e2e

#: Headers that the servers write themselves, or that depend on how they frame a body.
SERVER_HEADERS = {"date", "server", "connection", "keep-alive", "transfer-encoding"}

#: kind -> (status, headers the handler's response decides, body): what the official
#: SDK 1.25.0 sends on uvicorn for each response of ported_app.py.
EXPECTED: dict[str, tuple[int, dict[str, str], bytes]] = {
    "json_404": (
        404,
        {"content-length": "43", "content-type": "application/json", "x-agent": "ported"},
        '{"error":"not found","id":7,"name":"caf\u00e9"}'.encode(),
    ),
    "plain": (
        200,
        {
            "content-length": "11",
            "content-type": "text/plain; charset=utf-8",
            "x-agent": "ported",
            "set-cookie": "session=abc; HttpOnly; Path=/; SameSite=lax, "
            "theme=dark; Max-Age=60; Path=/; SameSite=lax",
        },
        "hello caf\u00e9".encode(),
    ),
    "html": (
        201,
        {"content-length": "12", "content-type": "text/html; charset=utf-8"},
        b"<p>hello</p>",
    ),
    "bare": (200, {"content-length": "5", "x-agent": "ported"}, b"\x00\x01raw"),
    "typed": (
        200,
        {"content-length": "8", "content-type": "text/csv; charset=utf-8"},
        b"a,b\n1,2\n",
    ),
    "no_content": (204, {}, b""),
    "redirect": (302, {"content-length": "0", "location": "/elsewhere?q=a%20b"}, b""),
    "own_call": (207, {"content-type": "text/plain", "x-parts": "2"}, b"part one, part two"),
    "http_default": (
        503,
        {"content-length": "31", "content-type": "application/json"},
        b'{"error":"Service Unavailable"}',
    ),
    "http_detail_object": (
        422,
        {"content-length": "46", "content-type": "application/json"},
        b'{"error":{"field":"name","problem":"missing"}}',
    ),
}

#: The one difference on purpose: the SDK drops an HTTPException's own headers;
#: this runtime sends them, as Starlette's own handler and werkzeug's errors do.
HTTP_400_SDK = (
    400,
    {"content-length": "21", "content-type": "application/json"},
    b'{"error":"bad thing"}',
)
HTTP_400_OURS = (400, {**HTTP_400_SDK[1], "x-reason": "bad"}, HTTP_400_SDK[2])

STREAMS = {
    "stream_sync": (
        {"content-type": "text/plain; charset=utf-8"},
        b"first chunk\n",
        "then the rest: caf\u00e9\n".encode(),
    ),
    "stream_async": (
        {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "x-agent": "ported",
        },
        b"data: first\n\n",
        b"data: then\n\ndata: done\n\n",
    ),
}


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds or ``timeout`` passes (the assert after says which)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def answer(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    reply = requests.post(url + "/invocations", json=payload, allow_redirects=False, timeout=60)
    headers = {k.lower(): v for k, v in reply.headers.items() if k.lower() not in SERVER_HEADERS}
    return reply.status_code, headers, reply.content


def stream_in_steps(url: str, kind: str, gate: Path) -> tuple[int, dict[str, str], bytes, bytes]:
    """Status, headers, what arrived before the gate opened, and the rest.

    The handler's stream waits for ``gate`` after its first chunk: the first
    chunk can only be read here before the gate opens if the server sent it
    as soon as it was made.
    """
    payload = {"kind": kind, "gate": str(gate)}
    with requests.post(url + "/invocations", json=payload, stream=True, timeout=60) as reply:
        chunks = reply.iter_content(chunk_size=None)
        first = b""
        while b"\n" not in first:
            first += next(chunks)
        gate.touch()
        rest = b"".join(chunks)
        headers = {k.lower(): v for k, v in reply.headers.items()}
    return reply.status_code, headers, first, rest


def assert_streamed_as_expected(url: str, kind: str, gate: Path) -> None:
    status, headers, first, rest = stream_in_steps(url, kind, gate)
    expected_headers, expected_first, expected_rest = STREAMS[kind]
    assert status == 200
    assert {k: headers.get(k) for k in expected_headers} == expected_headers
    assert "content-length" not in headers
    assert (first, rest) == (expected_first, expected_rest)


@pytest.fixture(scope="module", params=["gunicorn", "waitress"])
def server(request: Any, tmp_path_factory: Any) -> Iterator[servers.Server]:
    tmp = tmp_path_factory.mktemp(request.param)
    start = servers.gunicorn if request.param == "gunicorn" else servers.waitress
    with servers.serving(start("ported_app:app", tmp)) as running:
        yield running


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_starlette_response_is_sent_as_the_sdk_sends_it(
    server: servers.Server, kind: str
) -> None:
    assert answer(server.url, {"kind": kind, "id": 7}) == EXPECTED[kind]


def test_an_http_exception_answers_its_status_and_detail_with_its_headers(
    server: servers.Server,
) -> None:
    assert answer(server.url, {"kind": "http_400"}) == HTTP_400_OURS


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_a_streaming_response_is_sent_as_it_is_made(
    server: servers.Server, kind: str, tmp_path: Path
) -> None:
    assert_streamed_as_expected(server.url, kind, tmp_path / "gate")


def test_a_client_that_leaves_closes_the_stream(server: servers.Server, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    payload = {"kind": "stream_endless", "marker": str(marker)}
    with requests.post(server.url + "/invocations", json=payload, stream=True, timeout=60) as reply:
        assert next(reply.iter_content(chunk_size=None)).startswith(b"tick")
    # The server finds the client gone at its next write and closes the body,
    # which closes the handler's async generator on the loop.
    wait_for(marker.exists)
    assert marker.read_text() == "closed"


def test_a_file_response_sends_the_file_with_starlettes_headers(server: servers.Server) -> None:
    status, headers, body = answer(server.url, {"kind": "file"})
    app_file = servers.APPS / "ported_app.py"
    assert (status, body) == (200, app_file.read_bytes())
    assert headers["content-length"] == str(app_file.stat().st_size)
    assert headers["content-type"] == "text/x-python; charset=utf-8"
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"] and headers["last-modified"]


def test_a_response_that_fails_before_sending_is_a_json_500(server: servers.Server) -> None:
    status, headers, body = answer(server.url, {"kind": "missing_file"})
    assert (status, headers["content-type"]) == (500, "application/json")
    assert "/nonexistent/report.csv does not exist" in json.loads(body)["error"]


def test_a_background_task_runs_after_the_response(server: servers.Server, tmp_path: Path) -> None:
    marker = tmp_path / "background"
    assert answer(server.url, {"kind": "background", "path": str(marker)}) == (
        200,
        {"content-length": "11", "content-type": "application/json"},
        b'{"ok":true}',
    )
    wait_for(marker.exists)
    assert marker.read_text() == "ran"


def test_a_plain_result_is_still_json(server: servers.Server) -> None:
    status, _, body = answer(server.url, {"kind": "nothing"})
    assert (status, json.loads(body)) == (200, {"kind": "nothing"})


# -- the official SDK itself, on uvicorn -------------------------------------------


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: Any) -> Iterator[servers.Server]:
    pytest.importorskip("bedrock_agentcore")
    pytest.importorskip("uvicorn")
    tmp = tmp_path_factory.mktemp("sdk")
    port = servers.free_port()
    argv = [sys.executable, "-m", "uvicorn", "ported_app:app", "--port", str(port)]
    env = {**servers._env(None, tmp), "PORTED_APP_SDK": "1"}
    sdk = servers.Server(argv, port, env, tmp / "uvicorn.log", servers.APPS)
    with servers.serving(sdk) as running:
        yield running


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_expected_is_what_the_sdk_sends(sdk_server: servers.Server, kind: str) -> None:
    assert answer(sdk_server.url, {"kind": kind, "id": 7}) == EXPECTED[kind]


def test_a_file_response_is_the_sdks_to_the_byte(
    server: servers.Server, sdk_server: servers.Server
) -> None:
    assert answer(server.url, {"kind": "file"}) == answer(sdk_server.url, {"kind": "file"})


def test_the_sdk_answers_a_failed_response_as_plain_text(sdk_server: servers.Server) -> None:
    # The difference on purpose: this runtime's errors are JSON, naming the error.
    assert answer(sdk_server.url, {"kind": "missing_file"}) == (
        500,
        {"content-length": "21", "content-type": "text/plain; charset=utf-8"},
        b"Internal Server Error",
    )


def test_the_sdk_drops_an_http_exceptions_headers(sdk_server: servers.Server) -> None:
    assert answer(sdk_server.url, {"kind": "http_400"}) == HTTP_400_SDK


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_the_sdk_streams_alike(sdk_server: servers.Server, kind: str, tmp_path: Path) -> None:
    assert_streamed_as_expected(sdk_server.url, kind, tmp_path / "gate")


# -- through Flask's own dispatch -------------------------------------------------


@pytest.mark.unit
def test_a_mounted_agent_sends_them_alike_through_flasks_dispatch(tmp_path: Path) -> None:
    """An agent mounted into a Flask app whose ``after_request`` hook runs: Flask
    turns the answer into its own response class on the way out."""
    import flask
    from starlette.responses import Response, StreamingResponse

    from agentcore_sync import AgentCore

    agent = AgentCore(configure_logging=False)
    app = flask.Flask(__name__)
    app.register_blueprint(agent.blueprint)

    @app.after_request
    def tag(response: flask.Response) -> flask.Response:
        response.headers["X-Hooked"] = "1"
        return response

    async def chunks() -> Any:
        yield "one "
        yield b"two"

    @agent.entrypoint
    def handler(payload: dict[str, Any]) -> Any:
        if payload["kind"] == "no_content":
            return Response(status_code=204)
        if payload["kind"] == "bare":
            return Response(b"raw")
        return StreamingResponse(chunks())

    client = app.test_client()
    for kind, status, body, absent in (
        ("no_content", 204, b"", {"content-type", "content-length"}),
        ("bare", 200, b"raw", {"content-type"}),
        ("stream", 200, b"one two", {"content-type", "content-length"}),
    ):
        reply = client.post("/invocations", json={"kind": kind})
        headers = {k.lower() for k, _ in reply.headers.items()}
        assert (reply.status_code, reply.data, reply.headers["X-Hooked"]) == (status, body, "1")
        assert not absent & headers, (kind, headers)
    assert client.post("/invocations", json={"kind": "bare"}).headers["Content-Length"] == "3"


# -- without Starlette -------------------------------------------------------------


@pytest.mark.unit
def test_starlette_is_never_imported_by_the_runtime() -> None:
    """``import agentcore_sync`` and serving do not import Starlette; with Starlette
    absent, responses and HTTP errors are served as before."""
    script = textwrap.dedent(
        """
        import sys

        class NoStarlette:
            def find_spec(self, name, path=None, target=None):
                if name == "starlette" or name.startswith("starlette."):
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, NoStarlette())
        from flask import Response, abort
        from agentcore_sync import BedrockAgentCoreApp

        app = BedrockAgentCoreApp(configure_logging=False)

        @app.entrypoint
        def handler(payload):
            if payload["kind"] == "abort":
                abort(409)
            if payload["kind"] == "response":
                return Response("made", status=202, mimetype="text/plain")
            return {"kind": payload["kind"]}

        client = app.test_client()
        for kind, status in (("abort", 409), ("response", 202), ("json", 200)):
            reply = client.post("/invocations", json={"kind": kind})
            assert reply.status_code == status, (kind, reply.status_code, reply.data)
        assert not [name for name in sys.modules if name.startswith("starlette")]
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=servers.ROOT,
        env=servers._env(None, Path("/nonexistent")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.unit
def test_a_streamed_response_holds_its_invocation_slot_until_it_is_closed() -> None:
    """As an SSE stream does: a body still being sent is an invocation in flight."""
    import flask
    from starlette.responses import FileResponse, Response, StreamingResponse

    from agentcore_sync import AgentCore

    agent = AgentCore(configure_logging=False, max_concurrent_invocations=1)
    app = flask.Flask(__name__)
    app.register_blueprint(agent.blueprint)

    async def chunks() -> Any:
        yield "one"

    def flask_chunks() -> Any:
        yield "one"

    @agent.entrypoint
    def handler(payload: dict[str, Any]) -> Any:
        kind = payload["kind"]
        if kind == "starlette_stream":
            return StreamingResponse(chunks())
        if kind == "starlette_file":
            return FileResponse(__file__)
        if kind == "flask_stream":
            return flask.Response(flask_chunks())
        if kind == "starlette_body":
            return Response(b"body")
        return flask.Response(b"body")

    client = app.test_client()
    for kind in ("starlette_stream", "starlette_file", "flask_stream"):
        reply = client.post("/invocations", json={"kind": kind}, buffered=False)
        assert reply.status_code == 200, kind
        refused = client.post("/invocations", json={"kind": "flask_body"})
        assert refused.status_code == 503, kind
        reply.close()
        assert client.post("/invocations", json={"kind": "flask_body"}).status_code == 200, kind
    for kind in ("starlette_body", "flask_body"):
        held = client.post("/invocations", json={"kind": kind}, buffered=False)
        assert client.post("/invocations", json={"kind": kind}).status_code == 200, kind
        held.close()
