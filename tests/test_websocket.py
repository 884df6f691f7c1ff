"""``/ws``: ``@app.websocket`` served as the official SDK serves it, on gunicorn's threads.

The agent is ``tests/apps/ws_app.py`` (a coroutine handler, or a plain function
with ``WS_HANDLER=sync``), served by gunicorn with the shipped settings; the
client is ``websocket-client``. waitress cannot hold a WebSocket and says so.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from servers import APPS, Server, gunicorn, run_script, serving, wait_for, waitress

from agentcore_sync import AgentCore, BedrockAgentCoreApp, WebSocketDisconnect

SESSION = "websocket-session-0123456789abcdef-0123"
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
}


def connect(server: Server, do: str, **options: Any) -> websocket.WebSocket:
    url = server.url.replace("http://", "ws://") + f"/ws?do={do}"
    return websocket.create_connection(url, timeout=10, **options)


def close_code(ws: websocket.WebSocket) -> int:
    """The code of the close frame the server sends next."""
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0]  # type: ignore[no-any-return]


def read_to_the_end(ws: websocket.WebSocket) -> bytes:
    """Close from the client's side and read what the server sends until it ends the connection."""
    ws.send_close(1000)
    received = b""
    ws.sock.settimeout(10)
    while chunk := ws.sock.recv(4096):
        received += chunk
    return received


#: (handler kind, gunicorn worker): the shipped worker, and plain gthread as the
#: shipped settings pick it on gunicorn versions the worker is not tested on.
SERVED = [("async", "shipped"), ("sync", "shipped"), ("async", "gthread")]


@pytest.fixture(scope="module", params=SERVED, ids=["-".join(p) for p in SERVED])
def ws_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    handler, worker = request.param
    tmp = tmp_path_factory.mktemp(f"ws-{handler}-{worker}")
    env = {"WS_HANDLER": handler, "WS_RECORD": str(tmp / "record.json")}
    args = ("--worker-class", "gthread") if worker == "gthread" else ()
    with serving(gunicorn("ws_app:app", tmp, *args, env=env)) as server:
        yield server


def record_of(server: Server) -> Path:
    return Path(server.env["WS_RECORD"])


# -- echo, both kinds of handler ----------------------------------------------------


@pytest.mark.e2e
def test_text_messages_are_echoed(ws_server: Server) -> None:
    ws = connect(ws_server, "text")
    for text in ("hello", "é ✓", "x" * 100_000):
        ws.send(text)
        assert ws.recv() == text.upper()
    ws.close()


@pytest.mark.e2e
def test_json_messages_are_echoed(ws_server: Server) -> None:
    ws = connect(ws_server, "json")
    ws.send(json.dumps({"n": 1, "text": "é"}))
    answer = ws.recv()
    assert isinstance(answer, str)
    echo = json.loads(answer)
    assert echo["echo"] == {"n": 1, "text": "é"}
    # Starlette's encoding: compact, not ASCII-escaped.
    assert '"text":"é"' in answer
    ws.close()


@pytest.mark.e2e
def test_bytes_messages_are_echoed(ws_server: Server) -> None:
    ws = connect(ws_server, "bytes")
    ws.send_binary(b"\x00\x01\x02abc")
    assert ws.recv() == b"cba\x02\x01\x00"
    ws.close()


@pytest.mark.e2e
def test_the_context_carries_the_upgrade_requests_ids_and_headers(ws_server: Server) -> None:
    ws = connect(
        ws_server,
        "context",
        header={
            "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": SESSION,
            "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id": "ws-request-1",
            "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Clientid": "client-7",
        },
    )
    seen = json.loads(ws.recv())
    assert seen["session_id"] == SESSION
    assert seen["request_id"] == "ws-request-1"
    assert seen["current_request_id"] == "ws-request-1"
    assert "client-7" in seen["headers"].values()
    assert close_code(ws) == 1000


@pytest.mark.e2e
def test_a_request_id_is_made_when_the_upgrade_request_has_none(ws_server: Server) -> None:
    first = json.loads(connect(ws_server, "context").recv())
    second = json.loads(connect(ws_server, "context").recv())
    assert first["request_id"] and second["request_id"]
    assert first["request_id"] != second["request_id"]
    assert first["session_id"] is None


@pytest.mark.e2e
def test_messages_are_sent_while_the_handler_waits_for_one(ws_server: Server) -> None:
    ws = connect(ws_server, "duplex")
    assert [json.loads(ws.recv()) for _ in range(3)] == [{"tick": i} for i in range(3)]
    ws.send("x")
    assert ws.recv() == "got x"
    ws.close()


# -- errors and disconnects -----------------------------------------------------------


@pytest.mark.e2e
def test_a_handler_error_closes_with_1011(ws_server: Server) -> None:
    ws = connect(ws_server, "fail")
    ws.send("go")
    assert close_code(ws) == 1011
    wait_for(lambda: "RuntimeError: the handler failed" in ws_server.log(), "the traceback")
    assert "WebSocket handler failed" in ws_server.log()


@pytest.mark.e2e
def test_a_client_that_leaves_raises_the_disconnect_the_sdks_handlers_catch(
    ws_server: Server,
) -> None:
    record = record_of(ws_server)
    record.unlink(missing_ok=True)
    ws = connect(ws_server, "hold")
    assert ws.recv() == "held"
    ws.close(status=4001)
    seen = json.loads(wait_for(lambda: record.exists() and record.read_text(), "the record"))
    # The handler caught starlette.websockets.WebSocketDisconnect, with the client's code.
    assert seen == {"code": 4001, "class": "WebSocketDisconnect"}


@pytest.mark.e2e
def test_a_client_that_drops_the_connection_raises_the_disconnect(ws_server: Server) -> None:
    record = record_of(ws_server)
    record.unlink(missing_ok=True)
    ws = connect(ws_server, "json")
    ws.send(json.dumps(1))
    assert json.loads(ws.recv())["echo"] == 1
    ws.sock.shutdown(socket.SHUT_RDWR)
    ws.sock.close()
    seen = json.loads(wait_for(lambda: record.exists() and record.read_text(), "the record"))
    assert seen["class"] == "WebSocketDisconnect"


@pytest.mark.e2e
def test_after_the_session_the_connection_is_closed_with_nothing_written(ws_server: Server) -> None:
    ws = connect(ws_server, "text")
    ws.send("a")
    assert ws.recv() == "A"
    received = read_to_the_end(ws)
    # The server's close frame, then the end of the connection: no HTTP answer,
    # and the connection is not kept for another request.
    assert received[:1] == b"\x88"
    assert b"HTTP/" not in received
    assert requests.get(ws_server.url + "/ping", timeout=5).status_code == 200


@pytest.mark.e2e
def test_the_handler_may_refuse_before_accepting(ws_server: Server) -> None:
    refused = requests.get(ws_server.url + "/ws?do=reject", headers=UPGRADE, timeout=5)
    assert refused.status_code == 403  # as the SDK on uvicorn
    assert refused.headers["content-type"] == "application/json"
    failed = requests.get(ws_server.url + "/ws?do=fail_before_accept", headers=UPGRADE, timeout=5)
    assert failed.status_code == 500
    assert failed.json() == {"error": "refused before accepting"}


@pytest.mark.e2e
def test_a_plain_request_to_ws_is_answered_in_json(ws_server: Server) -> None:
    plain = requests.get(ws_server.url + "/ws", timeout=5)
    assert plain.status_code == 400
    assert "error" in plain.json()
    posted = requests.post(ws_server.url + "/ws", timeout=5)
    assert posted.status_code == 405
    assert "error" in posted.json()


# -- threads, admission, ping ------------------------------------------------------------


@pytest.mark.e2e
def test_an_open_websocket_holds_an_invocation_slot(tmp_path: Path) -> None:
    env = {"WS_MAX_INVOCATIONS": "1", "WS_RECORD": str(tmp_path / "record.json")}
    with serving(gunicorn("ws_app:app", tmp_path, env=env)) as server:
        ws = connect(server, "hold")
        assert ws.recv() == "held"
        # The one slot is the WebSocket's: invocations and other WebSockets are refused,
        # /ping is answered and says busy.
        refused = requests.post(server.url + "/invocations", json={}, timeout=5)
        assert refused.status_code == 503
        assert refused.json()["error"] == "Too many concurrent invocations"
        refused_ws = requests.get(server.url + "/ws?do=text", headers=UPGRADE, timeout=5)
        assert refused_ws.status_code == 503
        assert refused_ws.headers["Retry-After"] == "1"
        ping = requests.get(server.url + "/ping", timeout=5)
        assert ping.json()["status"] == "HealthyBusy"
        ws.close()
        # The slot is given back when the connection ends.
        wait_for(
            lambda: (
                requests.post(server.url + "/invocations", json={}, timeout=5).status_code == 200
            ),
            "the slot to be released",
        )
        assert requests.get(server.url + "/ping", timeout=5).json()["status"] == "Healthy"


@pytest.mark.e2e
def test_ping_and_invocations_are_answered_while_websockets_are_open(ws_server: Server) -> None:
    sockets = [connect(ws_server, "text") for _ in range(4)]
    for ws in sockets:
        ws.send("open")
        assert ws.recv() == "OPEN"
    for _ in range(20):
        assert requests.get(ws_server.url + "/ping", timeout=5).status_code == 200
    assert requests.post(ws_server.url + "/invocations", json=1, timeout=5).json() == {"invoked": 1}
    for ws in sockets:
        ws.send("still")
        assert ws.recv() == "STILL"
        ws.close()


@pytest.mark.e2e
def test_the_shipped_gunicorn_worker_says_it_serves_ws(ws_server: Server) -> None:
    shipped = "gthread" not in ws_server.argv
    assert ("Serving WebSocket /ws" in ws_server.log()) is shipped


@pytest.mark.e2e
def test_a_stopping_worker_closes_open_websockets_with_1012(tmp_path: Path) -> None:
    env = {"WS_RECORD": str(tmp_path / "record.json")}
    server = gunicorn("ws_app:app", tmp_path, env=env).start()
    try:
        ws = connect(server, "hold")
        assert ws.recv() == "held"
        server.signal(signal.SIGTERM)
        # As uvicorn does when the official SDK's server stops: "service restart".
        assert close_code(ws) == 1012
        seen = json.loads(
            wait_for(
                lambda: record_of(server).exists() and record_of(server).read_text(), "the record"
            )
        )
        assert seen["code"] == 1012
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()


@pytest.mark.e2e
def test_werkzeugs_development_server_serves_ws_too() -> None:
    from werkzeug.serving import make_server

    app = BedrockAgentCoreApp(result_store="memory://", configure_logging=False)

    @app.websocket
    def reverse(websocket: Any, context: Any) -> None:
        websocket.accept()
        for text in websocket.iter_text():
            websocket.send_text(text[::-1])

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws", timeout=10)
        ws.send("abc")
        assert ws.recv() == "cba"
        assert read_to_the_end(ws)[:1] == b"\x88"
        assert requests.get(f"http://127.0.0.1:{server.port}/ping", timeout=5).status_code == 200
    finally:
        server.shutdown()


# -- servers that cannot hold a WebSocket --------------------------------------------------


@pytest.mark.e2e
def test_waitress_answers_ws_with_a_json_error_naming_the_command(tmp_path: Path) -> None:
    with serving(waitress("ws_app:app", tmp_path)) as server:
        answer = requests.get(server.url + "/ws", headers=UPGRADE, timeout=5)
        assert answer.status_code == 501
        body = answer.json()
        assert body["error"] == "WebSocket not supported by this server"
        assert "gunicorn -c python:agentcore_sync.servers.gunicorn_config" in body["details"]
        assert requests.get(server.url + "/ping", timeout=5).status_code == 200


@pytest.mark.e2e
def test_run_says_at_start_which_server_serves_ws(tmp_path: Path) -> None:
    with serving(run_script(APPS / "ws_app.py", tmp_path)) as server:
        log = server.log()
    assert "WebSocket /ws is not served on waitress" in log
    assert "gunicorn -c python:agentcore_sync.servers.gunicorn_config" in log


# -- the decorator -------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("make", [BedrockAgentCoreApp, AgentCore])
def test_the_decorator_registers_and_returns_the_handler(make: Any) -> None:
    runtime = make(result_store="memory://", configure_logging=False)

    async def handler(websocket: Any, context: Any) -> None:
        pass

    assert runtime.websocket(handler) is handler
    holder = getattr(runtime, "runtime", runtime)
    assert holder.websocket_handler is handler


@pytest.mark.unit
def test_a_generator_handler_is_refused_at_registration() -> None:
    app = BedrockAgentCoreApp(result_store="memory://", configure_logging=False)

    def generator(websocket: Any, context: Any) -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="not a generator"):
        app.websocket(generator)


@pytest.mark.unit
def test_the_disconnect_is_starlettes_too_and_ours() -> None:
    from starlette.websockets import WebSocketDisconnect as StarletteDisconnect

    from agentcore_sync.web.websocket import _disconnect_class

    raised = _disconnect_class()(4001, "bye")
    assert isinstance(raised, StarletteDisconnect)
    assert isinstance(raised, WebSocketDisconnect)
    assert (raised.code, raised.reason) == (4001, "bye")


@pytest.mark.unit
def test_without_a_handler_ws_is_refused_as_the_sdk_refuses_it() -> None:
    app = BedrockAgentCoreApp(result_store="memory://", configure_logging=False)
    environ = {"werkzeug.socket": object()}  # a server that could hold it
    answer = app.test_client().get("/ws", headers=UPGRADE, environ_base=environ)
    assert answer.status_code == 403
    assert answer.json == {"error": "No WebSocket handler defined"}
