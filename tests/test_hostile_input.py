"""Hostile input against real servers (issue 6): the runtime must not crash, leak or lie.

``hardening_app`` runs under waitress (``app.run()``) and gunicorn (the shipped
config), one server per kind for the whole module, and receives generated
(hypothesis, and a seeded mutation fuzzer that is much cheaper per case) and
hand-written hostile requests: random and malformed bodies,
wrong and missing content types, invalid UTF-8, deep nesting, huge numbers,
bodies at and over the limit, huge and malformed headers, CR/LF and control
characters in the session and request id headers, unknown methods and paths,
requests cut off midway, and slow clients sending a byte at a time.

Pass conditions, checked on every answer:

- it is a well-formed HTTP response; a request that reaches the runtime gets a
  JSON body and the right status (the same oracle as the contract: 400 for a body
  that is not UTF-8 or not JSON, or for an invalid id header; 413 over the limit;
  404/405 for unknown paths and methods; 200 with the echoed payload otherwise);
- no 5xx (the handler of this module's requests never raises);

and, per server, after all of it (``test_zz_*``):

- ``/ping`` answered within 1 s throughout (a monitor process pings every 50 ms);
- the task registry is empty and no invocation slot is held;
- every line the server logged is gunicorn's own ``[date] [pid] [LEVEL]`` line or
  a JSON object with a real level; none starts with the attacker's ``FORGED``
  marker, and no JSON line's level came from the attacker.

Malformed HTTP that the server itself refuses (bad request line, header syntax,
header size limits) never reaches the runtime; those answers are checked for
being well-formed 4xx everywhere, and for being JSON by
``test_server_refusals_are_json`` alone.

At least 10,000 cases run per CI run (about 13,000 in some 30 s;
``test_zzz_case_count`` checks it when the whole module runs). Hypothesis runs
with ``database=None`` and is derandomized when ``CI=true``; the fuzzers' seed is
0 in CI, random otherwise, and ``HOSTILE_SEED`` replays one.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from soak import ACTION, Client, serving_hardening, wait_for

pytestmark = pytest.mark.e2e

SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_ID = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
MARKER = "FORGED"
LIMIT = 64 * 1024  # HARDENING_MAX_BODY, the app's default
ID_CHARS = re.compile(rb"[\x21-\x7e]{1,256}")
IN_CI = os.environ.get("CI", "").lower() == "true"
#: /ping must answer within this, throughout.
PING_WITHIN = 1.0

#: How many examples each generated test runs, per server.
EXAMPLES = {"bodies": 700, "escapes": 150, "ids": 600, "heads": 500, "sequences": 100}
#: How many seeded mutation-fuzz cases run per server (cheap: no hypothesis engine).
FUZZ_BODIES = 3500
FUZZ_REQUESTS = 1000
#: The fuzzers' seed: fixed in CI, else new each run (printed when a case fails).
FUZZ_SEED = int(os.environ.get("HOSTILE_SEED", "0" if IN_CI else str(time.time_ns() % 2**32)))


def hypothesis_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=IN_CI,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


#: Cases run, by (server kind, test): the module checks the total at the end.
CASES: Counter[tuple[str, str]] = Counter()


def count(server: Any, name: str, n: int = 1) -> None:
    CASES[(server.kind, name)] += n


# -- servers -------------------------------------------------------------------


class PingMonitor:
    """Pings the server every 50 ms from a process of its own (``ping_monitor.py``,
    where the test's own threads do not delay it); records the worst."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self.failures: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, name="ping-monitor", daemon=True)

    def start(self) -> PingMonitor:
        script = Path(__file__).with_name("ping_monitor.py")
        self._process = subprocess.Popen(
            [sys.executable, str(script), self.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        # Back once the first ping is answered, before the test's load begins:
        # the monitor's connection is not one more in the opening rush.
        assert self._process.stdout is not None
        self._record(self._process.stdout.readline())
        self._reader.start()
        return self

    def stop(self) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(10)
        self._reader.join(10)

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._record(line)

    def _record(self, line: str) -> None:
        if not line:  # the process ended before its first ping
            self.failures.append("the ping monitor's process exited")
            return
        ping = json.loads(line)
        if ping["failure"]:
            self.failures.append(ping["failure"])
        self.worst = max(self.worst, ping["elapsed"])
        self.count += 1


@pytest.fixture(scope="module", params=["waitress", "gunicorn"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with serving_hardening(request.param, tmp) as running:
        running.monitor = PingMonitor(running.url).start()  # type: ignore[attr-defined]
        running.refusals = []  # type: ignore[attr-defined]
        try:
            yield running
        finally:
            running.monitor.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[Client]:
    # No second try on a fresh connection: a dropped connection is a failure here.
    client = Client(server.url, retry=False)
    yield client
    client.close()


# -- raw HTTP ------------------------------------------------------------------


@dataclass
class Raw:
    """One answer read off a socket."""

    status: int
    version: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)


class _NoClose:
    """A file that ``http.client.HTTPResponse`` may close without closing ours."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        pass


class _FileSocket:
    def __init__(self, file: Any) -> None:
        self._file = file

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return _NoClose(self._file)


def parse_answer(file: Any, method: str) -> tuple[Raw, bool] | None:
    """The next answer on ``file`` and whether the server will close; None at EOF.

    Raises when the bytes are not a well-formed HTTP response.
    """
    response = http.client.HTTPResponse(_FileSocket(file), method=method)  # type: ignore[arg-type]
    try:
        response.begin()
    except http.client.RemoteDisconnected:
        return None
    body = response.read()
    headers = {k.lower(): v for k, v in response.getheaders()}
    return Raw(response.status, response.version, headers, body), bool(response.will_close)


def exchange_once(
    port: int, request: bytes, method: str = "POST", timeout: float = 5.0
) -> list[Raw]:
    """Send ``request``, close our side, and parse every answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before taking everything
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    file = io.BytesIO(data)
    answers = []
    while file.tell() < len(data):
        parsed = parse_answer(file, method)
        if parsed is None:
            break
        answers.append(parsed[0])
        if method == "HEAD":
            # Both servers send a body with their own error answers to HEAD, which no
            # client can tell from the next answer: only the first one is read.
            break
    return answers


class RawConnection:
    """A keep-alive connection for requests that ``http.client`` refuses to send."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.file: Any = None

    def exchange(self, request: bytes, method: str = "POST") -> Raw | None:
        """One request, one answer; None when the server closed without answering."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.file = self.sock.makefile("rb")
        try:
            self.sock.sendall(request)
            parsed = parse_answer(self.file, method)
        except (ConnectionResetError, BrokenPipeError):
            parsed = None
        if parsed is None:
            self.close()
            return None
        answer, closing = parsed
        if closing:
            self.close()
        return answer

    def close(self) -> None:
        if self.sock is not None:
            self.file.close()
            self.sock.close()
            self.sock = self.file = None


def head(
    method: bytes = b"POST",
    path: bytes = b"/invocations",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
    length: bool = True,
) -> bytes:
    lines = [method + b" " + path + b" " + version, b"Host: 127.0.0.1"]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    lines += [name + b": " + value for name, value in headers or []]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# -- oracles -------------------------------------------------------------------


def expected_for_body(body: bytes) -> tuple[int, Any]:
    """What the runtime answers to ``body`` on POST /invocations: (status, JSON or error)."""
    if len(body) > LIMIT:
        return 413, "Request body too large"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return 400, "Invalid encoding"
    if nesting_depth(body) > SERVER_MAX_DEPTH:
        # The server parses with Python's default recursion limit (1000); this
        # process may run with another one (hypothesis raises it).
        return 400, "Invalid JSON"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return 400, "Invalid JSON"
    return 200, {"echo": value}


#: Deeper than this the server's parser gives up (recursion limit 1000, minus its stack).
SERVER_MAX_DEPTH = 1000


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in ``body``, brackets inside strings not counted."""
    if body.count(b"[") + body.count(b"{") <= SERVER_MAX_DEPTH:
        return 0  # not deep enough to matter, whatever the strings hold
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def check_runtime_answer(answer: Any, status: int, expected: Any, what: str) -> None:
    """An answer from the runtime: the right status and a JSON body with the right content."""
    assert answer.status == status, (what, answer.status, answer.body[:300])
    assert answer.content_type == "application/json", (what, answer.headers)
    body = json.loads(answer.body)
    if status == 200:
        assert canonical(body) == canonical(expected), (what, answer.body[:300])
    else:
        assert isinstance(body, dict) and body.get("error") == expected, (what, body)


def check_well_formed(server: Any, answer: Raw, what: Any, request: bytes = b"") -> None:
    """Any answer: no 5xx; JSON from the runtime; a server's own refusal is a 4xx (noted)."""
    unsupported = is_unsupported_coding(answer, request)
    assert answer.status < 500 or unsupported, (what, answer.status, answer.body)
    if answer.content_type == "application/json" and answer.body:
        json.loads(answer.body)
        if answer.status >= 400:
            assert "error" in json.loads(answer.body), (what, answer.body)
        return
    if not answer.body and (answer.status in (200, 204) or answer.content_type):
        return  # OPTIONS, and answers to HEAD: no body by definition
    assert 400 <= answer.status < 500 or unsupported, (what, answer.status)
    server.refusals.append((what, answer.status))


def is_unsupported_coding(answer: Raw, request: bytes = b"") -> bool:
    # RFC 9112 section 6.1: an unknown transfer coding SHOULD be answered 501 (by the
    # servers themselves; the answer to HEAD has no body to say so).
    return answer.status == 501 and (
        b"transfer" in answer.body.lower() or b"transfer-encoding" in request.lower()
    )


# -- generated: bodies -----------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**53 + 1, -(2**63) - 1, 2**64, 10**300, 7 * 10**4000, -(10**4299)])
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)
CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=FORGED",
    "application/xml",
    "",
    "*/*",
    "FORGED/x-evil; q=FORGED",
]


class Body(bytes):
    """Bytes whose repr stays short in hypothesis's reports."""

    def __repr__(self) -> str:
        if len(self) <= 120:
            return bytes.__repr__(self)
        return f"<{len(self)} bytes: {bytes.__repr__(self[:60])}...{bytes.__repr__(self[-20:])}>"


@st.composite
def hostile_bodies(draw: st.DrawFn) -> Body:
    return Body(draw(_hostile_bodies()))


@st.composite
def _hostile_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json", "binary", "text", "mutated", "nested", "number", "size"]))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "binary":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8")
    if kind == "mutated":
        data = bytearray(json.dumps(draw(json_values)).encode())
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(data)))
            if draw(st.booleans()) and position < len(data):
                del data[position]
            else:
                data[position:position] = draw(st.binary(min_size=1, max_size=3))
        return bytes(data)
    if kind == "nested":
        # Away from the recursion limit (~1000), where the server's stack and this
        # process's would disagree.
        depth = draw(st.integers(1, 600) | st.integers(1500, 5000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        closed = draw(st.booleans())
        return opener * depth + b"1" + (closer * depth if closed else b"")
    if kind == "number":
        digits = draw(st.integers(1, 6000))
        sign = draw(st.sampled_from([b"", b"-"]))
        tail = draw(st.sampled_from([b"", b".5", b"e999999", b"e-999999", b"E+1"]))
        return sign + b"7" * digits + tail
    size = draw(st.integers(LIMIT - 40, LIMIT + 40))
    return b'"' + b"x" * max(0, size - 2) + b'"'


def test_generated_bodies(server: Any, client: Client) -> None:
    """Random, mutated, nested, numeric and boundary-size bodies with random content types."""

    @hypothesis_settings(EXAMPLES["bodies"])
    @given(body=hostile_bodies(), content_type=st.sampled_from(CONTENT_TYPES))
    @example(body=b"\xff\xfe{\x00}\x00", content_type="application/json")
    @example(body=b"\xef\xbb\xbf{}", content_type="application/json")
    @example(body=b"", content_type=None)
    @example(body=b"NaN", content_type="application/json")
    def case(body: bytes, content_type: str | None) -> None:
        status, expected = expected_for_body(body)
        # Lone surrogates (a mutation can split an escaped surrogate pair) are
        # test_generated_json_escapes's case; here they would hide every other one.
        assume(status != 200 or not has_lone_surrogate(expected))
        count(server, "bodies")
        headers = {} if content_type is None else {"Content-Type": content_type}
        answer = client.request("POST", "/invocations", body, headers)
        check_runtime_answer(answer, status, expected, body[:100])

    case()


def has_lone_surrogate(value: Any) -> bool:
    return re.search("[\ud800-\udfff]", json.dumps(value, ensure_ascii=False)) is not None


# -- generated: JSON string escapes ----------------------------------------------


@st.composite
def escaped_strings(draw: st.DrawFn) -> bytes:
    """A JSON document whose strings hold arbitrary ``\\uXXXX`` escapes (lone surrogates too)."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            parts.append(b"\\u%04x" % draw(st.integers(0, 0xFFFF)))
        else:
            parts.append(draw(st.text(alphabet="abc FORGED", max_size=5)).encode())
    text = b"".join(parts)
    return draw(st.sampled_from([b'"%s"', b'["%s"]', b'{"note": "%s"}', b'{"%s": 1}'])) % text


def test_generated_json_escapes(server: Any, client: Client) -> None:
    """Every ``\\uXXXX`` escape is valid JSON (RFC 8259 §7); none may cost a 5xx.

    Lone surrogates (``"\\ud800"``) decode to Python strings that UTF-8 cannot
    encode; the echoed answer must still be a 200 with a JSON body.
    """

    @hypothesis_settings(EXAMPLES["escapes"])
    @given(body=escaped_strings())
    @example(body=b'["\\ud800"]')
    @example(body=b'{"note": "\\udfff FORGED"}')
    def case(body: bytes) -> None:
        count(server, "escapes")
        answer = client.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        assert answer.status == 200, (body, answer.status, answer.body[:300])
        assert answer.content_type == "application/json"
        assert canonical(answer.json()) == canonical({"echo": json.loads(body)}), body

    case()


# -- generated: id headers ---------------------------------------------------------

id_values = st.one_of(
    st.binary(max_size=300),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300
    ).map(str.encode),
    st.text(max_size=40).map(lambda s: s.encode("utf-8")),
    st.sampled_from(
        [
            b"ok-id",
            b'FORGED\r\n{"level": "CRITICAL", "message": "FORGED"}',
            b"abc\r\nFORGED: 1",
            b"abc\nFORGED",
            b"abc\rFORGED",
            b"a\x00FORGED",
            b"a\x1b[31mFORGED",
            b"a\x7fFORGED",
            b"a\tFORGED",
            b"FORGED\xff\xfe",
            b"x" * 256,
            b"x" * 257,
            b"",
            b" ",
        ]
    ),
)


def test_generated_id_headers(server: Any) -> None:
    """Session and request id headers of any bytes: echoed when valid, 400 otherwise."""
    connection = RawConnection(server.port)

    @hypothesis_settings(EXAMPLES["ids"])
    @given(session=st.none() | id_values, request_id=st.none() | id_values)
    def case(session: bytes | None, request_id: bytes | None) -> None:
        count(server, "ids")
        headers = [(b"Content-Type", b"application/json")]
        if session is not None:
            headers.append((SESSION.encode(), session))
        if request_id is not None:
            headers.append((REQUEST_ID.encode(), request_id))
        body = json.dumps({ACTION: "context"}).encode()
        injected = any(v is not None and re.search(rb"[\r\n]", v) for v in (session, request_id))
        answer = connection.exchange(head(headers=headers, body=body))
        if injected:
            connection.close()  # what follows an injected line break is not ours to read
        assert answer is not None, "closed without an answer"
        check_well_formed(server, answer, (session, request_id))
        if injected or answer.json().get("error") == "Bad Request":
            return  # refused by the server itself (in JSON too), or split into other lines
        sent = {"session_id": session, "request_id": request_id}
        valid = {k: v is None or bool(ID_CHARS.fullmatch(v.strip(b" \t"))) for k, v in sent.items()}
        if all(valid.values()):
            assert answer.status == 200, (sent, answer.status, answer.body)
            echoed = answer.json()
            for key, value in sent.items():
                if value is not None:
                    assert echoed[key] == value.strip(b" \t").decode(), (sent, echoed)
            assert ID_CHARS.fullmatch(echoed["request_id"].encode())
        else:
            assert answer.status == 400, (sent, answer.status, answer.body)
            error = answer.json()["error"]
            assert error.startswith("Invalid X-Amzn-Bedrock-AgentCore-Runtime-"), error
            assert MARKER not in error

    try:
        case()
    finally:
        connection.close()


# -- generated: request heads --------------------------------------------------------

TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
methods = st.one_of(
    st.sampled_from(
        [b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS", b"TRACE", b"CONNECT"]
    ),
    st.sampled_from([b"FOO", b"FORGED", b"get", b"PRI", b"M-SEARCH", b"PROPFIND"]),
    st.text(alphabet=TOKEN, min_size=1, max_size=10).map(str.encode),
    st.binary(max_size=10),
)
paths = st.one_of(
    st.sampled_from(
        [
            b"/ping",
            b"/invocations",
            b"/",
            b"*",
            b"//invocations",
            b"/invocations/",
            b"/ping?FORGED=1",
            b"/%2e%2e/ping",
            b"/%ff%00FORGED",
            b"http://127.0.0.1/ping",
            b"/invocations#FORGED",
            b"/FORGED\x01",
            b"/" + b"a" * 5000,
        ]
    ),
    st.binary(max_size=40).map(lambda b: b"/" + b),
)
versions = st.sampled_from(
    [
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"HTTP/0.9",
        b"HTTP/2.0",
        b"HTTP/1.1x",
        b"",
        b"http/1.1",
        b"HTTP/9.9",
    ]
)
header_names = st.one_of(
    st.sampled_from(
        [
            SESSION,
            REQUEST_ID,
            "Content-Type",
            "Content-Length",
            "Transfer-Encoding",
            "Expect",
            "Connection",
            "Host",
            "Authorization",
            "X-Amzn-Bedrock-AgentCore-Runtime-Custom-FORGED",
            "WorkloadAccessToken",
            "OAuth2CallbackUrl",
            "FORGED",
        ]
    ).map(str.encode),
    st.text(alphabet=TOKEN, min_size=1, max_size=20).map(str.encode),
    st.binary(max_size=20),
)
header_values = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda s: s.encode("utf-8")),
    st.sampled_from(
        [
            b"chunked",
            b"100-continue",
            b"0",
            b"-1",
            b"99999999999999999999",
            b"close",
            b'FORGED\r\n{"level": "CRITICAL", "message": "FORGED"}',
            b"x\r\n\r\nGET /FORGED HTTP/1.1",
            b"x" * 9000,
        ]
    ),
)


@st.composite
def request_heads(draw: st.DrawFn) -> tuple[bytes, bytes]:
    method = draw(methods)
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    body = draw(st.binary(max_size=80) | json_values.map(lambda v: json.dumps(v).encode()))
    request = head(
        method=method,
        path=draw(paths),
        headers=[*headers, (b"Connection", b"close")],
        body=body,
        version=draw(versions),
        length=draw(st.booleans()),
    )
    return request, method


def test_generated_request_heads(server: Any) -> None:
    """Random methods, paths, versions and headers, each on a connection of its own."""

    @hypothesis_settings(EXAMPLES["heads"])
    @given(case=request_heads())
    def run(case: tuple[bytes, bytes]) -> None:
        count(server, "heads")
        request, method = case
        for answer in exchange_once(server.port, request, method.decode("latin-1")):
            check_well_formed(server, answer, request[:200], request)

    run()


def test_generated_request_sequences(server: Any) -> None:
    """Several requests pipelined on one connection, some broken: every answer well-formed."""
    pieces = st.sampled_from(
        [
            head(method=b"GET", path=b"/ping"),
            head(body=b'{"a": 1}'),
            head(body=b"\xff"),
            head(body=b"[" * 5000),
            head(method=b"DELETE", path=b"/invocations"),
            head(path=b"/FORGED"),
            head(headers=[(SESSION.encode(), b"bad id FORGED")], body=b"{}"),
            b"GET /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\n{}\r\n0\r\n\r\n",
            b"GARBAGE FORGED\r\n\r\n",
        ]
    )

    @hypothesis_settings(EXAMPLES["sequences"])
    @given(sequence=st.lists(pieces, min_size=1, max_size=6))
    def run(sequence: list[bytes]) -> None:
        count(server, "sequences")
        method = sequence[0].split(b" ", 1)[0].decode()
        answers = exchange_once(server.port, b"".join(sequence), method)
        assert answers, "no answer at all"
        for answer in answers:
            check_well_formed(server, answer, sequence, b"".join(sequence))

    run()


# -- hand-written: bodies --------------------------------------------------------------

HAND_BODIES: list[tuple[str, bytes]] = [
    ("invalid utf-8 start byte", b"\xff\xfe"),
    ("invalid utf-8 in a string", b'{"a": "\xc3\x28"}'),
    ("overlong utf-8", b'"\xc0\xaf"'),
    ("utf-8 encoded surrogate", b'"\xed\xa0\x80"'),
    ("truncated utf-8", b'"\xe2\x82"'),
    ("utf-16 json", '{"a": 1}'.encode("utf-16")),
    ("utf-8 bom", b"\xef\xbb\xbf{}"),
    ("empty", b""),
    ("whitespace", b" \t\r\n "),
    ("null", b"null"),
    ("zero", b"0"),
    ("string", b'"FORGED"'),
    ("raw control char in string", b'"a\x01b"'),
    ("raw newline in string", b'"FORGED\n{\\"level\\": \\"CRITICAL\\"}"'),
    ("escaped nul", b'"\\u0000"'),
    ("raw nul", b"\x00"),
    ("nested 50", b"[" * 50 + b"]" * 50),
    ("nested 500", b"[" * 500 + b"]" * 500),
    ("nested 100000 open", b"[" * 100_000),
    ("nested 20000 closed", b"[" * 20_000 + b"]" * 20_000),
    ("nested objects 30000", b'{"a":' * 30_000 + b"1" + b"}" * 30_000),
    ("4300 digits", b"9" * 4300),
    ("4301 digits", b"9" * 4301),
    ("60000 digits", b"9" * 60_000),
    ("huge exponent", b"1e999999999"),
    ("tiny exponent", b"1e-999999999"),
    ("long fraction", b"0." + b"0" * 60_000 + b"1"),
    ("NaN", b"NaN"),
    ("Infinity", b"[Infinity, -Infinity]"),
    ("duplicate keys", b'{"a": 1, "a": 2}'),
    ("trailing comma", b'{"a": 1,}'),
    ("single quotes", b"{'a': 1}"),
    ("comment", b"// FORGED\n{}"),
    ("two documents", b"{} {}"),
    ("many keys", json.dumps({f"k{i}": i for i in range(5000)}).encode()),
    ("long string at the limit", b'"' + b"x" * (LIMIT - 2) + b'"'),
    ("one byte over the limit", b'"' + b"x" * (LIMIT - 1) + b'"'),
    ("debug action, debug off", b'{"_agent_core_app_action": "force_busy"}'),
    ("log injection note", b'{"note": "x\\nFORGED {\\"level\\": \\"CRITICAL\\"}\\r\\nFORGED"}'),
    ("ansi escape note", b'{"note": "\\u001b[2J\\u001b[31mFORGED"}'),
]


@pytest.mark.parametrize("name, body", HAND_BODIES, ids=[name for name, _ in HAND_BODIES])
def test_hand_written_bodies(server: Any, client: Client, name: str, body: bytes) -> None:
    for content_type in (None, "application/json", "text/plain; charset=FORGED"):
        count(server, "hand bodies")
        headers = {} if content_type is None else {"Content-Type": content_type}
        answer = client.request("POST", "/invocations", body, headers)
        status, expected = expected_for_body(body)
        check_runtime_answer(answer, status, expected, name)


# -- hand-written: methods, paths, headers -------------------------------------------

HAND_REQUESTS: list[tuple[str, bytes, tuple[int, ...]]] = [
    ("unknown method", head(method=b"FOO", body=b"{}"), (405,)),
    ("unknown method FORGED", head(method=b"FORGED", path=b"/ping"), (405,)),
    ("TRACE", head(method=b"TRACE", path=b"/ping"), (405,)),
    ("CONNECT", b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n", (404, 405)),
    ("DELETE invocations", head(method=b"DELETE"), (405,)),
    ("GET invocations", head(method=b"GET", length=False), (405,)),
    ("POST ping", head(path=b"/ping", body=b"{}"), (405,)),
    ("PUT ping", head(method=b"PUT", path=b"/ping", body=b"{}"), (405,)),
    ("unknown path", head(path=b"/FORGED"), (404,)),
    ("root", head(method=b"GET", path=b"/", length=False), (404,)),
    ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", (404, 200)),
    ("trailing slash", head(path=b"/invocations/", body=b"{}"), (404, 308)),
    ("double slash", head(path=b"//invocations", body=b"{}"), (404, 200)),
    ("dot segments", head(path=b"/%2e%2e/ping", method=b"GET"), (404,)),
    ("percent nul", head(path=b"/%00FORGED", method=b"GET"), (404,)),
    ("percent invalid utf-8", head(path=b"/%ff%fe", method=b"GET"), (404,)),
    ("long path 4000", head(path=b"/" + b"a" * 4000, method=b"GET"), (404,)),
    ("query on ping", head(path=b"/ping?x=%0d%0aFORGED", method=b"GET"), (200,)),
    ("absolute uri", head(path=b"http://127.0.0.1/ping", method=b"GET"), (200,)),
    ("HEAD ping", head(method=b"HEAD", path=b"/ping", length=False), (200,)),
    ("OPTIONS invocations", head(method=b"OPTIONS", length=False), (200,)),
    ("no host header", b"POST /invocations HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", (200,)),
    ("http/1.0", b"POST /invocations HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", (200,)),
    (
        "chunked body",
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\n{\r\n1\r\n}\r\n0\r\n\r\n",
        (200,),
    ),
    (
        "chunked body over the limit",
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % (LIMIT + 10)
        + b'"'
        + b"x" * (LIMIT + 8)
        + b'"\r\n0\r\n\r\n',
        (413,),
    ),
    (
        "chunked with extension",
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2;FORGED=1\r\n{}\r\n0\r\n\r\n",
        (200,),
    ),
    (
        "content-length too small",
        b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{"a": 1}',
        (400,),
    ),
    ("session id with space", head(headers=[(SESSION.encode(), b"a FORGED")], body=b"{}"), (400,)),
    ("session id 257", head(headers=[(SESSION.encode(), b"s" * 257)], body=b"{}"), (400,)),
    ("session id latin-1", head(headers=[(SESSION.encode(), b"a\xe9FORGED")], body=b"{}"), (400,)),
    ("request id 257", head(headers=[(REQUEST_ID.encode(), b"r" * 257)], body=b"{}"), (400,)),
    ("request id empty", head(headers=[(REQUEST_ID.encode(), b"")], body=b"{}"), (400,)),
    (
        "request id utf-8",
        head(headers=[(REQUEST_ID.encode(), "réq-FORGED".encode())], body=b"{}"),
        (400,),
    ),
    (
        "session id lower-case header",
        head(headers=[(SESSION.lower().encode(), b"a FORGED")], body=b"{}"),
        (400,),
    ),
    (
        "session id underscore header",
        head(headers=[(SESSION.replace("-", "_").encode(), b"bad id")], body=b"{}"),
        (200, 400),
    ),
    (
        "many small headers",
        head(headers=[(b"X-H%d" % i, b"v") for i in range(90)], body=b"{}"),
        (200,),
    ),
    (
        "large custom header",
        head(headers=[(b"X-Amzn-Bedrock-AgentCore-Runtime-Custom-Big", b"v" * 8000)], body=b"{}"),
        (200,),
    ),
]

#: Requests that the servers refuse themselves (never reaching the runtime).
MALFORMED: list[tuple[str, bytes]] = [
    ("garbage request line", b"GARBAGE FORGED\r\n\r\n"),
    ("method with @", b"G@T /ping HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header without colon", b"POST /invocations HTTP/1.1\r\nHost: x\r\nFORGED\r\n\r\n"),
    ("space before colon", b"GET /ping HTTP/1.1\r\nHost: x\r\nFORGED : 1\r\n\r\n"),
    ("nul in session id", head(headers=[(SESSION.encode(), b"a\x00FORGED")], body=b"{}")),
    ("control char in session id", head(headers=[(SESSION.encode(), b"a\x01FORGED")], body=b"{}")),
    ("DEL in session id", head(headers=[(SESSION.encode(), b"a\x7fFORGED")], body=b"{}")),
    ("bare CR in session id", head(headers=[(SESSION.encode(), b"a\rFORGED")], body=b"{}")),
    (
        "bare LF in request id",
        head(headers=[(REQUEST_ID.encode(), b'a\nFORGED: {"level": "CRITICAL"}')], body=b"{}"),
    ),
    ("non-ascii header name", head(headers=[("X-é".encode(), b"1")], body=b"{}")),
    (
        "negative content-length",
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ),
    (
        "two content-lengths",
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}",
    ),
    (
        "invalid chunk size",
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ZZ\r\n{}\r\n0\r\n\r\n",
    ),
    ("header of 300 KiB", head(headers=[(b"X-Big", b"a" * 300_000)], body=b"{}")),
    ("request line of 300 KiB", b"GET /" + b"a" * 300_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("1000 headers", head(headers=[(b"X-H%d" % i, b"v" * 300) for i in range(1000)], body=b"{}")),
]


def check_hand_request(server: Any, name: str, request: bytes, statuses: tuple[int, ...]) -> None:
    method = request.split(b" ", 1)[0].decode()
    answers = exchange_once(server.port, request, method)
    assert answers, f"{name}: no answer"
    answer = answers[0]
    check_well_formed(server, answer, name)
    assert answer.status in statuses, (name, answer.status, answer.body[:300])
    if answer.status >= 400:
        assert answer.content_type == "application/json", (name, answer.headers, answer.body)


@pytest.mark.parametrize(
    "name, request_bytes, statuses", HAND_REQUESTS, ids=[case[0] for case in HAND_REQUESTS]
)
def test_hand_written_requests(
    server: Any, name: str, request_bytes: bytes, statuses: tuple[int, ...]
) -> None:
    count(server, "hand requests")
    check_hand_request(server, name, request_bytes, statuses)


@pytest.mark.parametrize("name, request_bytes", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_http_is_refused_with_a_4xx(server: Any, name: str, request_bytes: bytes) -> None:
    """The server refuses it (or the runtime, when it gets through): a well-formed 4xx."""
    count(server, "malformed")
    method = request_bytes.split(b" ", 1)[0].decode("latin-1")
    answers = exchange_once(server.port, request_bytes, method)
    assert answers, f"{name}: no answer"
    check_well_formed(server, answers[0], name)
    assert 400 <= answers[0].status < 500, (name, answers[0].status, answers[0].body[:300])


def test_server_refusals_are_json(server: Any) -> None:
    """Issue 6: *every* answer has a JSON body, also the server's own refusals of malformed HTTP.

    waitress answers them with text/plain and gunicorn with text/html, before any
    WSGI code runs; only the serving layer (waitress's error task, gunicorn's
    worker ``handle_error``) can make them JSON.
    """
    not_json = []
    for name, request_bytes in MALFORMED:
        count(server, "malformed json")
        method = request_bytes.split(b" ", 1)[0].decode("latin-1")
        answers = exchange_once(server.port, request_bytes, method)
        if answers and answers[0].content_type != "application/json":
            not_json.append((name, answers[0].status, answers[0].content_type))
    assert not not_json, f"{server.kind} answered malformed HTTP without JSON: {not_json}"


# -- generated: seeded mutation fuzzing ----------------------------------------------
#
# Hypothesis costs milliseconds per example on its own; these fuzzers mutate a corpus
# of valid and hostile inputs with a seeded random generator, thousands of cases in
# seconds, with the same oracles. A failure names the seed and case to replay.

FUZZ_TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b'"',
    b"\\",
    b"[" * 2000,
    b"{" * 50,
    b"9" * 4400,
    b"1e999",
    b"NaN",
    b"-",
    b",",
    b":",
    b"}",
    b"]",
    b"FORGED",
    b'{"level": "CRITICAL", "message": "FORGED"}',
    "é€😀".encode(),
    b" " * 100,
]
FUZZ_SEEDS = [
    json.dumps(value, ensure_ascii=False).encode()
    for value in [
        {},
        [],
        {"note": "FORGED", "n": [1, 2.5, None, True]},
        {"a": {"b": {"c": ["d", {"e": "é€😀"}]}}},
        "string",
        123456789,
        -0.5e-7,
        [{"k": "v"}] * 20,
        {"_agent_core_app_action": "force_busy"},
    ]
]


def mutate(rng: random.Random, data: bytes, rounds: int) -> bytes:
    buffer = bytearray(data)
    for _ in range(rounds):
        position = rng.randint(0, len(buffer))
        operation = rng.randrange(6)
        if operation == 0 and buffer:
            buffer[min(position, len(buffer) - 1)] = rng.randrange(256)
        elif operation == 1:
            buffer[position:position] = rng.choice(FUZZ_TOKENS)
        elif operation == 2:
            del buffer[position : position + rng.randint(1, 8)]
        elif operation == 3:
            buffer[position:position] = buffer[position : position + rng.randint(1, 16)]
        elif operation == 4:
            del buffer[position:]
        else:
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    return bytes(buffer)


def fuzz_body(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    if choice < 0.15:
        return b'"' + b"x" * rng.randint(LIMIT - 20, LIMIT + 20) + b'"'
    return mutate(
        rng, rng.choice(FUZZ_SEEDS + [body for _, body in HAND_BODIES[:30]]), rng.randint(0, 5)
    )


def test_fuzzed_bodies(server: Any, client: Client) -> None:
    """Mutated JSON bodies over one keep-alive connection: the same oracle as above."""
    rng = random.Random(FUZZ_SEED)
    ran = 0
    for n in range(FUZZ_BODIES):
        body = fuzz_body(rng)
        status, expected = expected_for_body(body)
        if status == 200 and has_lone_surrogate(expected):
            continue  # test_generated_json_escapes's case
        content_type = rng.choice(CONTENT_TYPES)
        headers = {} if content_type is None else {"Content-Type": content_type}
        answer = client.request("POST", "/invocations", body, headers)
        check_runtime_answer(answer, status, expected, f"seed {FUZZ_SEED} case {n}: {body[:80]!r}")
        ran += 1
    count(server, "fuzzed bodies", ran)


def fuzz_request(rng: random.Random) -> tuple[bytes, str]:
    method = rng.choice([b"GET", b"POST", b"POST", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"FOO"])
    path = rng.choice([b"/invocations", b"/invocations", b"/ping", b"/FORGED", b"/", b"*"])
    headers = [(b"Content-Type", b"application/json")]
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(
            [
                SESSION.encode(),
                REQUEST_ID.encode(),
                b"Authorization",
                b"X-Amzn-Bedrock-AgentCore-Runtime-Custom-FORGED",
                b"Transfer-Encoding",
                b"Content-Length",
                b"Expect",
                b"FORGED",
            ]
        )
        value = mutate(
            rng, rng.choice([b"ok-id", b"chunked", b"100-continue", b"12", b"FORGED"]), 2
        )
        headers.append((name, value))
    body = fuzz_body(rng)[:2000]
    request = head(method, path, [*headers, (b"Connection", b"close")], body)
    if rng.random() < 0.3:
        cut = request.index(b"\r\n\r\n")
        request = mutate(rng, request[:cut], rng.randint(1, 3)) + request[cut:]
    return request, method.decode()


def test_fuzzed_requests(server: Any) -> None:
    """Mutated request lines and headers, one connection each: every answer well-formed."""
    rng = random.Random(FUZZ_SEED + 1)
    for n in range(FUZZ_REQUESTS):
        request, method = fuzz_request(rng)
        for answer in exchange_once(server.port, request, method):
            what = f"seed {FUZZ_SEED + 1} case {n}: {request[:200]!r}"
            check_well_formed(server, answer, what, request)
    count(server, "fuzzed requests", FUZZ_REQUESTS)


# -- big bodies and declared lengths ---------------------------------------------------


def test_body_far_over_the_limit_is_413(server: Any) -> None:
    """10 MiB sent against a 64 KiB limit: 413 JSON, and the server is fine afterwards."""
    count(server, "big bodies")
    body = b"[" + b"1," * (5 * 1024 * 1024) + b"1]"
    answers = exchange_once(server.port, head(body=body), timeout=30)
    assert answers, "no answer"
    check_runtime_answer(answers[0], 413, "Request body too large", "10 MiB")


# -- cut off midway --------------------------------------------------------------------

CUT_OFF: list[tuple[str, bytes]] = [
    ("inside the request line", b"POST /invocat"),
    ("inside a header", b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty"),
    ("after the headers", head(body=b'{"a": 1}')[: -len(b'{"a": 1}')]),
    ("inside the body", head(body=b'{"note": "FORGED cut"}')[:-8]),
    # What was sent is valid JSON: only the declared length shows it is not all.
    ("inside a number", head(body=b"1234567890")[:-5]),
    ("before trailing whitespace", head(body=b'"abcdef" ')[:-1]),
    (
        "inside a chunk",
        b'POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"a"',
    ),
    (
        "before the last chunk",
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
    ),
]


@pytest.mark.parametrize("name, request_bytes", CUT_OFF, ids=[case[0] for case in CUT_OFF])
def test_requests_cut_off_midway(server: Any, name: str, request_bytes: bytes) -> None:
    """The client stops sending and closes: no answer, or a well-formed 4xx.

    Never a 5xx, and never a 200: a body shorter than its Content-Length is not a
    payload to hand to the handler, even when the part that came is valid JSON.
    """
    count(server, "cut off")
    for answer in exchange_once(server.port, request_bytes):
        check_well_formed(server, answer, name)
        assert 400 <= answer.status < 500, (name, answer.status, answer.body[:300])


@pytest.mark.parametrize("action", ["stream", "stream_task", "astream_task"])
def test_streams_cut_off_by_the_client(server: Any, client: Client, action: str) -> None:
    """Clients that read one event of a stream and vanish: tasks and slots are released."""
    for _ in range(5):
        count(server, "cut streams")
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        payload = {ACTION: action, "count": 100, "interval": 0.05}
        sock.sendall(head(body=json.dumps(payload).encode()))
        received = b""
        while b"data: " not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # with a reset

    def released() -> bool:
        info = client.call("info")
        return info["active_count"] == 0 and info["in_flight"] == 1

    assert wait_for(released, 8), client.call("info")


# -- slow clients ------------------------------------------------------------------------


def test_slow_clients_byte_by_byte(server: Any) -> None:
    """Six clients sending a request one byte every 2 ms (bounded: ~1 s each) while /ping runs."""
    results: dict[int, Any] = {}

    def slow(n: int) -> None:
        body = json.dumps({"slow": n, "note": "FORGED slow"}).encode()
        request = head(headers=[(b"Content-Type", b"application/json")], body=body)
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.002)
            file = sock.makefile("rb")
            parsed = parse_answer(file, "POST")
            results[n] = parsed[0] if parsed else None

    threads = [threading.Thread(target=slow, args=(n,), daemon=True) for n in range(6)]
    for thread in threads:
        thread.start()
    pings = Client(server.url, timeout=5)
    worst = 0.0
    while any(thread.is_alive() for thread in threads):
        started = time.perf_counter()
        assert pings.ping().status == 200
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.05)
    pings.close()
    for thread in threads:
        thread.join(30)
    count(server, "slow clients", len(threads))
    for n in range(6):
        answer = results.get(n)
        assert answer is not None, n
        check_runtime_answer(answer, 200, {"echo": {"slow": n, "note": "FORGED slow"}}, n)
    assert worst < PING_WITHIN, f"/ping took {worst:.3f}s while slow clients were sending"


def test_stalled_clients_do_not_block_ping(server: Any) -> None:
    """Clients that send half a request and stall (up to 2 s) hold no thread /ping needs."""
    socks = []
    try:
        for n in range(8):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            partial = head(body=b'{"stalled": %d}' % n)
            sock.sendall(partial[: len(partial) // 2 if n % 2 else 30])
            socks.append(sock)
        count(server, "stalled clients", len(socks))
        pings = Client(server.url, timeout=5)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert pings.ping().status == 200
            assert time.perf_counter() - started < PING_WITHIN
            assert pings.invoke({"during": "stall"}).status == 200
            time.sleep(0.1)
        pings.close()
    finally:
        for sock in socks:
            sock.close()


# -- afterwards --------------------------------------------------------------------------

GUNICORN_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def forged_log_lines(log: str) -> list[str]:
    """Lines that are neither gunicorn's own nor a JSON object with a real level; lines
    that start with the marker; JSON lines whose level or logger came from the attacker."""
    bad = []
    # JSON lines are separated by "\n" alone (what CloudWatch and NDJSON readers split
    # on); test_security checks the other characters some readers split on.
    for line in log.split("\n"):
        if not line.strip():
            continue
        if line.lstrip().startswith(MARKER):
            bad.append(line)
            continue
        if GUNICORN_LINE.match(line):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if (
            not isinstance(entry, dict)
            or entry.get("level") not in LEVELS
            or MARKER in str(entry.get("logger"))
            or MARKER in str(entry.get("timestamp"))
        ):
            bad.append(line)
    return bad


def test_zz_server_stayed_healthy_and_logs_are_not_forged(server: Any, client: Client) -> None:
    count(server, "afterwards")
    monitor = server.monitor
    assert not monitor.failures, monitor.failures[:10]
    assert monitor.count > 0
    assert monitor.worst < PING_WITHIN, f"/ping took {monitor.worst:.3f}s at worst"
    info = wait_for(
        lambda: (i := client.call("info"))["active_count"] == 0 and i["in_flight"] == 1 and i, 5
    )
    assert info, client.call("info")
    # Attacker text that reaches log lines on purpose, whatever else ran before.
    forged = 'x\nFORGED {"level": "CRITICAL", "message": "FORGED"}\r\nFORGED\x1b[2J\u2028FORGED'
    assert client.invoke({"note": forged}).status == 200
    assert client.call("log", message=forged)
    assert client.invoke({ACTION: "raise", "message": forged}).status == 500
    time.sleep(0.3)  # log lines written by the status-change thread
    log = server.log()
    assert MARKER in log, "the attacker's text never reached the log: the check would be vacuous"
    bad = forged_log_lines(log)
    assert not bad, "\n".join(bad[:20])
    refusals = Counter(status for _what, status in server.refusals)
    print(f"\n{server.kind}: /ping worst {monitor.worst * 1000:.1f} ms over {monitor.count} pings;")
    refused = sum(refusals.values())
    print(f"{server.kind}: the server itself refused {refused} requests {dict(refusals)}")


def test_zzz_case_count() -> None:
    """The module ran at least 10,000 hostile cases (when it ran as a whole)."""
    total = sum(CASES.values())
    by_test: Counter[str] = Counter()
    for (_kind, name), n in CASES.items():
        by_test[name] += n
    print(f"\nhostile cases: {total} {dict(by_test)}")
    complete = {kind for kind, name in CASES if name == "afterwards"}
    if complete != {"waitress", "gunicorn"} or not all(
        by_test[name] for name in ("bodies", "ids", "heads")
    ):
        pytest.skip(f"only part of the module ran ({total} cases)")
    assert total >= 10_000, dict(by_test)
