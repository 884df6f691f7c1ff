"""The shipped gunicorn worker keeps a connection on its pool thread while its
requests come back to back (gunicorn_worker.ThreadWorker).

Real gunicorn with the shipped config, spoken to over raw sockets; the app is
``tests/apps/ping_app.py``. The inline ping of the same worker is tested in
``test_inline_ping.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import servers
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.unreader import IterUnreader
from test_inline_ping import RawConnection

from agentcore_sync.servers.gunicorn_worker import _body_read_to_end, _KeptSocket

pytestmark = pytest.mark.e2e

THREAD = b"GET /thread HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def gunicorn(tmp: Path, threads: int) -> servers.Server:
    return servers.gunicorn("ping_app:app", tmp, env={"AGENTCORE_SYNC_THREADS": str(threads)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.serving(gunicorn(tmp_path_factory.mktemp("worker"), 4)) as running:
        yield running


def served_by(reply: servers.Reply) -> int:
    assert reply.status == 200, reply
    return int(reply.json()["thread"])


def test_requests_sent_back_to_back_stay_on_their_pool_thread(server: servers.Server) -> None:
    # Four requests at once start four pool threads, which then wait for work
    # in turn: handed back to the poller after each answer, a connection's
    # requests would go round them.
    holders = [
        threading.Thread(
            target=requests.get, args=(f"{server.url}/hold?seconds=0.5",), kwargs={"timeout": 30}
        )
        for _ in range(4)
    ]
    for holder in holders:
        holder.start()
    for holder in holders:
        holder.join()
    conn = RawConnection(server.port)
    try:
        threads = []
        for _ in range(30):
            conn.send(THREAD)
            threads.append(served_by(conn.reply()))
    finally:
        conn.close()
    # A request that comes later than NEXT_REQUEST_WAIT (a descheduled test
    # process) goes through the poller to whichever thread is next.
    assert Counter(threads).most_common(1)[0][1] >= 24, Counter(threads)


def test_a_kept_connection_gives_way_to_one_waiting_for_a_thread(tmp_path: Path) -> None:
    with servers.serving(gunicorn(tmp_path, 1)) as server:
        stop = threading.Event()
        answered: list[int] = []
        finished = threading.Event()

        def back_to_back() -> None:
            conn = RawConnection(server.port)
            deadline = time.monotonic() + 20
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    conn.send(THREAD)
                    answered.append(served_by(conn.reply()))
            finally:
                finished.set()
                conn.close()

        sender = threading.Thread(target=back_to_back)
        sender.start()
        try:
            while len(answered) < 50 and not finished.is_set():
                time.sleep(0.01)
            other = RawConnection(server.port)
            before = len(answered)
            other.send(THREAD)
            served_by(other.reply())
            # Served after the few requests of the first connection that were
            # under way, not once the first stops sending (20 s); and the first
            # goes on being served after it.
            assert len(answered) - before <= 10 and not finished.is_set()
            count = len(answered)
            while len(answered) < count + 10 and not finished.is_set():
                time.sleep(0.01)
            assert len(answered) >= count + 10
            other.close()
        finally:
            stop.set()
            sender.join()


@pytest.mark.parametrize(
    "request_with_body",
    [
        b"POST /thread HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /thread HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"a": [1]}\n',
    ],
    ids=["unread", "unread-chunked", "read"],
)
def test_a_body_ends_where_the_next_request_starts(
    server: servers.Server, request_with_body: bytes
) -> None:
    conn = RawConnection(server.port)
    try:
        for _ in range(3):
            conn.send(request_with_body + THREAD)
            first = conn.reply()
            assert first.status == 200, first
            if b"/invocations" in request_with_body:
                assert first.json() == {"a": [1]}
            served_by(conn.reply())
        # A body that arrives in two parts, the second after the answer.
        head, body = request_with_body[:-4], request_with_body[-4:]
        conn.send(head)
        if b"/thread" in head:  # answered without reading the body
            assert conn.reply().status == 200
            conn.send(body + THREAD)
        else:
            time.sleep(0.1)
            conn.send(body + THREAD)
            assert conn.reply().json() == {"a": [1]}
        served_by(conn.reply())
    finally:
        conn.close()


def test_a_body_that_stops_coming_closes_its_connection(server: servers.Server) -> None:
    conn = RawConnection(server.port)
    try:
        conn.send(b"POST /thread HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nhello")
        served_by(conn.reply())
        # gthread's drain gives up on the rest after 5 s and closes; waiting for
        # it without a bound would hold a pool thread as long as the client likes.
        assert conn.closed_by_server()
    finally:
        conn.close()


# -- units --------------------------------------------------------------------


def test_a_kept_socket_still_changes_mode() -> None:
    left, right = socket.socketpair()
    try:
        left.__class__ = _KeptSocket
        left.setblocking(False)
        assert left.gettimeout() == 0.0
        with pytest.raises(BlockingIOError):
            left.recv(1)
        left.setblocking(False)  # the same: nothing to do
        left.settimeout(0.05)
        with pytest.raises(TimeoutError):
            left.recv(1)
        left.setblocking(True)
        assert left.gettimeout() is None
        right.sendall(b"x")
        assert left.recv(1) == b"x"
        left.settimeout(None)  # the same again
        right.sendall(b"y")
        assert left.recv(1) == b"y"
    finally:
        left.close()
        right.close()


class _Message:
    def __init__(self, body: Body | None) -> None:
        self.body = body


def test_a_body_is_read_to_its_end_only_when_known_to_be() -> None:
    assert _body_read_to_end(_Message(None))
    assert _body_read_to_end(_Message(Body(LengthReader(IterUnreader([]), 0))))
    unread = Body(LengthReader(IterUnreader([b"hello"]), 5))
    assert not _body_read_to_end(_Message(unread))
    assert unread.read(3) == b"hel"
    assert not _body_read_to_end(_Message(unread))
    assert unread.read() == b"lo"
    assert _body_read_to_end(_Message(unread))
    chunked = Body(ChunkedReader(None, IterUnreader([b"0\r\n\r\n"])))
    assert not _body_read_to_end(_Message(chunked))  # not known without reading
