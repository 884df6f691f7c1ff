"""Security defaults (issue 6), each with a test, against real servers where it matters.

- Debug actions are off unless asked for (``debug=True``).
- No traceback or exception internals in any response, beyond the contract's
  ``{"error": str(exc)}`` for a handler's exception.
- The body limit is enforced before the body is read: a declared length over it
  is refused without the client sending the body, a chunked body is refused once
  it passes the limit.
- Request and session ids are validated (length, characters) before they are
  logged or stored; an invalid one is answered 400, and appears nowhere.
- Store files (and the directories the runtime creates for them) are readable by
  their owner only, whatever the umask.
- Credentials in store URLs never reach a log line (nor a response).
- Log lines hold no raw character that common line splitters take for a line end.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import servers
from soak import ACTION, Client, hardening_server, serving_hardening, wait_for
from test_hostile_input import REQUEST_ID, SESSION, exchange_once, head, parse_answer

from agentcore_sync import AgentCore, BedrockAgentCoreApp
from agentcore_sync.core.runtime import DEFAULT_MAX_BODY_SIZE

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024  # hardening_app's body limit
INTERNALS = ("Traceback", 'File "', "/work/", ".py", "hunter2", "/srv/secret")


@pytest.fixture(scope="module", params=["waitress", "gunicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp(f"security-{request.param}")
    with serving_hardening(request.param, tmp) as running:
        running.store_path = tmp / "results.db"  # type: ignore[attr-defined]
        yield running


@pytest.fixture
def client(server: Any) -> Iterator[Client]:
    client = Client(server.url)
    yield client
    client.close()


# -- debug actions ---------------------------------------------------------------------


def test_debug_is_off_by_default() -> None:
    app = BedrockAgentCoreApp(result_store="memory://", configure_logging=False)
    assert app.runtime.debug is False
    assert AgentCore(result_store="memory://", configure_logging=False).debug is False


@pytest.mark.parametrize(
    "action", ["ping_status", "job_status", "force_healthy", "force_busy", "clear_forced_status"]
)
def test_debug_actions_go_to_the_handler_when_debug_is_off(
    server: Any, client: Client, action: str
) -> None:
    payload = {"_agent_core_app_action": action}
    answer = client.invoke(payload)
    assert answer.status == 200
    assert answer.json() == {"echo": payload}, "a debug action was answered with debug off"
    assert client.ping().json()["status"] == "Healthy"


def test_debug_actions_answer_when_asked_for(tmp_path: Path) -> None:
    with servers.serving(
        hardening_server("waitress", tmp_path, env={"HARDENING_DEBUG": "1"})
    ) as server:
        client = Client(server.url)
        assert client.invoke({"_agent_core_app_action": "force_busy"}).json() == {
            "forced_status": "HealthyBusy"
        }
        assert client.ping().json()["status"] == "HealthyBusy"
        client.invoke({"_agent_core_app_action": "clear_forced_status"})
        assert client.ping().json()["status"] == "Healthy"
        info = client.invoke({"_agent_core_app_action": "job_status"}).json()
        assert info == {"active_count": 0, "running_jobs": []}
        unknown = client.invoke({"_agent_core_app_action": "FORGED"})
        assert unknown.status == 400 and "error" in unknown.json()
        client.close()


# -- no internals in responses ------------------------------------------------------------


def assert_no_internals(body: bytes, what: str) -> None:
    text = body.decode("utf-8", "replace")
    for marker in INTERNALS:
        assert marker not in text, f"{what}: {marker!r} in {text[:300]!r}"


def test_handler_exception_answers_str_exc_only(server: Any, client: Client) -> None:
    answer = client.invoke({ACTION: "raise", "message": "boom"})
    assert answer.status == 500
    assert answer.json() == {"error": "boom"}


def test_no_response_carries_internals(server: Any, client: Client) -> None:
    answers = {
        "invalid json": client.request("POST", "/invocations", b"{nope"),
        "invalid utf-8": client.request("POST", "/invocations", b'"\xff"'),
        "too large": client.request("POST", "/invocations", b'"' + b"x" * LIMIT + b'"'),
        "bad session id": client.invoke({}, {SESSION: "a b"}),
        "404": client.request("GET", "/FORGED"),
        "405": client.request("DELETE", "/invocations"),
        "handler raised": client.invoke({ACTION: "raise", "message": "boom"}),
        "SystemExit": client.invoke({ACTION: "system_exit"}),
        "coroutine SystemExit": client.invoke({ACTION: "coroutine_exit"}),
        "flask view raised": client.request("GET", "/boom"),
        "unknown action": client.invoke({ACTION: "unknown action"}),
    }
    for what, answer in answers.items():
        assert 400 <= answer.status < 600, (what, answer.status)
        assert answer.content_type == "application/json", (what, answer.headers)
        body = answer.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str), (what, body)
        assert_no_internals(answer.body, what)
    assert answers["flask view raised"].status == 500
    server_header = answers["404"].headers.get("server", "")
    assert not any(ch.isdigit() for ch in server_header), (
        f"Server header shows a version: {server_header}"
    )


def test_stream_error_event_carries_no_internals(server: Any, client: Client) -> None:
    """An exception mid-stream: the contract's last event, and nothing more."""
    answer = client.invoke({ACTION: "stream_error"})
    assert answer.status == 200
    events = [json.loads(chunk[6:]) for chunk in answer.body.split(b"\n\n") if chunk]
    assert events[0] == {"i": 0}
    assert events[-1] == {
        "error": "stream broke",
        "error_type": "RuntimeError",
        "message": "An error occurred during streaming",
    }
    assert_no_internals(answer.body, "stream error")


# -- the body limit ---------------------------------------------------------------------


def read_answer_within(sock: socket.socket, seconds: float) -> Any:
    sock.settimeout(seconds)
    try:
        parsed = parse_answer(sock.makefile("rb"), "POST")
    except TimeoutError:
        return None
    return parsed[0] if parsed else None


def test_default_body_limit_is_100_mib() -> None:
    runtime = AgentCore(result_store="memory://", configure_logging=False)
    assert runtime.max_body_size == DEFAULT_MAX_BODY_SIZE == 100 * 1024 * 1024


def test_declared_length_over_the_limit_is_refused_before_the_body_is_sent(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 209715200\r\n\r\n"
        )
        started = time.monotonic()
        answer = read_answer_within(sock, 2.0)
    assert answer is not None, (
        f"{server.kind}: no answer within 2 s to a declared 200 MiB body (limit {LIMIT} bytes): "
        "the server waits for (and buffers) the whole body before the limit applies"
    )
    assert answer.status == 413, answer.body
    assert answer.content_type == "application/json"
    assert time.monotonic() - started < 2.0


def test_chunked_body_is_refused_once_past_the_limit(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 16384
        for _ in range(LIMIT // len(chunk) + 8):  # past the limit, and no last chunk
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (ConnectionResetError, BrokenPipeError):
                # The server answered and closed while chunks were on their way: the
                # rest of the body reset the connection. Its answer came first.
                break
        answer = read_answer_within(sock, 2.0)
    assert answer is not None, (
        f"{server.kind}: no answer within 2 s to a chunked body past the limit: "
        "the server reads the whole body before the limit applies"
    )
    assert answer.status == 413, answer.body
    assert answer.content_type == "application/json"


# -- id validation ------------------------------------------------------------------------

VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))


@pytest.mark.parametrize(
    "header, value",
    [
        (SESSION, b"with space MARK"),
        (SESSION, b"MARK" + b"s" * 253),  # 257 characters
        (SESSION, b"latin1-\xe9-MARK"),
        (REQUEST_ID, b"tab\there-MARK"),
        (REQUEST_ID, "utf8-é-MARK".encode()),
        (REQUEST_ID, b"MARK" + b"r" * 253),
    ],
    ids=["space", "too long", "latin-1", "tab", "utf-8", "request id too long"],
)
def test_invalid_ids_are_refused_before_they_are_logged_or_stored(
    server: Any, client: Client, header: str, value: bytes
) -> None:
    mark = f"MARK{time.time_ns()}".encode()
    value = value.replace(b"MARK", mark)
    payload = json.dumps({ACTION: "start", "kind": "thread", "value": "never"}).encode()
    answers = exchange_once(server.port, head(headers=[(header.encode(), value)], body=payload))
    assert answers and answers[0].status == 400, answers
    assert answers[0].content_type == "application/json"
    assert mark.decode() not in answers[0].body.decode("latin-1")
    assert client.call("info")["active_count"] == 0, "the handler ran"
    time.sleep(0.2)
    assert mark.decode() not in server.log(), "an invalid id reached the log"
    for path in server.store_path.parent.glob(server.store_path.name + "*"):  # -wal too
        assert mark not in path.read_bytes(), f"an invalid id reached the store ({path.name})"


def test_valid_ids_of_every_visible_character_reach_logs_and_records_intact(
    server: Any, client: Client
) -> None:
    session = VISIBLE + "s" * (256 - len(VISIBLE))
    request_id = ("r" * 256)[: 256 - len(VISIBLE)] + VISIBLE[::-1]
    headers = {SESSION: session, REQUEST_ID: request_id}
    marker = f"valid-ids-{time.time_ns()}"
    answer = client.invoke({ACTION: "log", "message": marker}, headers)
    assert answer.json() == {"request_id": request_id, "session_id": session}
    started = client.invoke({ACTION: "start", "kind": "thread", "value": 1}, headers)
    task_id = started.json()["task_id"]

    def logged() -> dict[str, Any] | None:
        for line in server.log().split("\n"):
            if marker in line:
                return json.loads(line)
        return None

    entry = wait_for(logged, 3)
    assert entry, "the log line is missing"
    assert (entry["requestId"], entry["sessionId"]) == (request_id, session)
    record = wait_for(
        lambda: (
            (r := client.call("result", task_id=task_id)["record"])["status"] == "succeeded" and r
        ),
        5,
    )
    assert (record["request_id"], record["session_id"]) == (request_id, session)


# -- store files -----------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_store_files_are_readable_by_their_owner_only(kind: str, tmp_path: Path) -> None:
    base = tmp_path / "made-by-the-runtime"
    store = base / "nested" / "results.db"
    env = {"AGENTCORE_SYNC_RESULT_STORE": f"sqlite:///{store}"}
    previous = os.umask(0)  # inherited by the server: the runtime must not rely on it
    try:
        server = hardening_server(kind, tmp_path, env=env).start()
    finally:
        os.umask(previous)
    try:
        client = Client(server.url)
        task_id = client.call("start", kind="thread", value=1)["task_id"]
        wait_for(
            lambda: client.call("result", task_id=task_id)["record"]["status"] == "succeeded", 5
        )
        time.sleep(0.3)  # the record is written
        client.close()
        for directory in (base, base / "nested"):
            assert mode(directory) == 0o700, f"{directory}: {oct(mode(directory))}"
        files = [p for p in base.rglob("*") if p.is_file()]
        assert store in files
        for path in files:
            assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"
    finally:
        server.stop()


def test_an_existing_store_file_is_made_owner_only(tmp_path: Path) -> None:
    store = tmp_path / "results.db"
    store.touch()
    store.chmod(0o644)
    env = {"AGENTCORE_SYNC_RESULT_STORE": f"sqlite:///{store}"}
    with servers.serving(hardening_server("waitress", tmp_path, env=env)) as server:
        client = Client(server.url)
        client.call("start", kind="thread")
        time.sleep(0.3)
        client.close()
        for path in tmp_path.glob("results.db*"):
            assert mode(path) == 0o600, f"{path}: {oct(mode(path))}"


# -- credentials in store URLs ---------------------------------------------------------------

PASSWORD = "s3cret-PW-9f8e7d"


def credentials_test(kind: str, tmp_path: Path, url: str, secrets: list[str], poke: Any) -> str:
    env = {"AGENTCORE_SYNC_RESULT_STORE": url, "AGENTCORE_SYNC_SHUTDOWN_GRACE": "1"}
    server = hardening_server(kind, tmp_path, env=env)
    with servers.serving(server):
        client = Client(server.url)
        bodies: list[bytes] = []
        for round_ in range(2):
            if round_:
                poke()
            for n in range(3):
                answer = client.invoke({ACTION: "start", "kind": "thread", "value": n})
                bodies.append(answer.body)
                if answer.status == 200:
                    task_id = answer.json()["task_id"]
                    time.sleep(0.2)
                    bodies.append(client.invoke({ACTION: "result", "task_id": task_id}).body)
        time.sleep(1.5)  # retries and their log lines
        client.close()
    log = server.log()
    assert log.count("\n") > 2
    for secret in secrets:
        assert secret not in log, f"{secret!r} in the log:\n{log[-3000:]}"
        for body in bodies:
            assert secret.encode() not in body, body
    return log


def test_redis_password_never_logged_through_an_outage(
    tmp_path: Path, redis_server_factory: Any
) -> None:
    redis = redis_server_factory(password=PASSWORD)
    log = credentials_test("waitress", tmp_path, redis.url, [PASSWORD], redis.stop)
    assert "***" in log, "the outage was not logged with the redacted URL"


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_wrong_redis_password_never_logged(
    kind: str, tmp_path: Path, redis_server_factory: Any
) -> None:
    redis = redis_server_factory(password=PASSWORD)
    wrong = "wrong-PW-" + PASSWORD[::-1]
    url = redis.url.replace(PASSWORD, wrong)
    log = credentials_test(kind, tmp_path, url, [wrong, PASSWORD], lambda: None)
    assert "***" in log


def test_unreachable_store_url_with_user_password_and_query_secret_never_logged(
    tmp_path: Path,
) -> None:
    url = f"redis://agent:{PASSWORD}@127.0.0.1:1/0?password=Q-{PASSWORD}&socket_timeout=1"
    log = credentials_test("waitress", tmp_path, url, [PASSWORD], lambda: None)
    assert "***" in log


def test_malformed_store_url_with_password_never_logged(tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:notaport/0"
    credentials_test("waitress", tmp_path, url, [PASSWORD], lambda: None)


# -- log lines -------------------------------------------------------------------------------


def test_log_lines_hold_no_raw_line_separators(server: Any, client: Client) -> None:
    """JSON log lines end at "\\n" only: U+2028, U+2029 and U+0085 from a request must be
    escaped too, or readers that split on them (Python's ``str.splitlines``, many
    editors and log viewers) see a line the attacker wrote."""
    forged = '\u2028{"level": "CRITICAL", "message": "FORGED-LS"}\u2029FORGED-PS\x85FORGED-NEL'
    assert client.invoke({"note": forged}).status == 200
    time.sleep(0.2)
    lines = [line for line in server.log().split("\n") if "FORGED-PS" in line]
    assert lines, "the note was not logged"
    for line in lines:
        for separator in ("\u2028", "\u2029", "\x85"):
            assert separator not in line, f"raw {separator!r} in the log line {line!r}"
        assert len(line.splitlines()) == 1
