"""A waitress server for an agent.

Through waitress's public API it gets the threads and the body limit. On the
waitress versions CI tests (``core.versions.WAITRESS_INLINE``), two
accelerators reach into waitress's internals: the I/O thread answers plain
pings itself (``inline_ping``), so a ping never waits for a pool thread, and
waitress's own refusals (malformed HTTP, a body over the limit) are JSON like
every other answer of an agent. Elsewhere waitress serves as it is.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..core.serialization import encode
from ..core.versions import WAITRESS_INLINE, Gate, gate
from .inline_ping import InlinePing


def gate_of_waitress() -> Gate:
    return gate(*WAITRESS_INLINE)


def create_server(
    wsgi: Any, host: str, port: int, threads: int, body_limit: int | None, **options: Any
) -> Any:
    """A waitress server of ``threads`` threads for ``wsgi``; bodies over ``body_limit``
    are refused before they are read."""
    import waitress

    options.setdefault("ident", "agentcore_sync")
    if body_limit is not None:
        # waitress refuses a body of its limit or more, the runtime one over its limit.
        options.setdefault("max_request_body_size", body_limit + 1)
    if not gate_of_waitress().on:
        return waitress.create_server(wsgi, host=host, port=port, threads=threads, **options)
    ident = options["ident"]
    server_header = b"Server: %s\r\n" % ident.encode("latin-1") if ident else b""
    dispatcher = _dispatcher(InlinePing.for_served(wsgi, server_header))
    dispatcher.set_thread_count(threads)
    server = waitress.create_server(
        wsgi, host=host, port=port, threads=threads, _dispatcher=dispatcher, **options
    )
    server.channel_class = _json_error_channel(body_limit)
    return server


def _json_error_channel(body_limit: int | None) -> type:
    """A waitress channel whose own refusals (malformed HTTP, body too large) are JSON,
    the body limit's in the same words as the runtime's."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JSONErrorTask(ErrorTask):  # type: ignore[misc]
        def execute(self) -> None:
            error = self.request.error
            if error.code == 413:
                body = encode({"error": "Request body too large", "limit": body_limit})
            else:
                body = encode({"error": error.reason, "details": error.body})
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JSONErrorChannel(HTTPChannel):  # type: ignore[misc]
        error_task_class = JSONErrorTask

    return JSONErrorChannel


def _dispatcher(inline: InlinePing | None) -> Any:
    """waitress's task dispatcher, except that plain pings are answered where they arrive."""
    from waitress.task import ThreadedTaskDispatcher

    # Set on the dispatcher's own threads: add_task() called there (by a
    # channel with pipelined requests) hands on, as waitress does.
    pool_thread = threading.local()

    class PingAnsweringDispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
        def handler_thread(self, thread_no: int) -> None:
            pool_thread.marked = True
            super().handler_thread(thread_no)

        def add_task(self, channel: Any) -> None:
            # On the I/O thread this is called with the channel's requests lock
            # held, when its only request is complete: none of its requests is
            # being served, so an answer written now is in order.
            if (
                inline is None
                or getattr(pool_thread, "marked", False)
                or not _answer_inline(channel, inline)
            ):
                super().add_task(channel)

    return PingAnsweringDispatcher()


def _answer_inline(channel: Any, inline: InlinePing) -> bool:
    """Answer the channel's one request if it is a plain ping; whether it was."""
    if len(channel.requests) != 1:
        return False
    request = channel.requests[0]
    adj = channel.adj
    if (
        request.error is not None
        or request.command != "GET"
        or request.path != "/ping"
        or request.version != "1.1"
        or request.connection_close
        or request.chunked
        or request.content_length
        or request.expect_continue
        or "UPGRADE" in request.headers
        or adj.url_prefix
        or not channel.connected
        # write_soon() would wait for the I/O thread to flush this much.
        or channel.total_outbufs_len >= adj.outbuf_high_watermark
    ):
        return False
    answer = inline.response()
    if answer is None:
        return False
    channel.write_soon(answer)
    # What service() does after a request: a fresh buffer for the next answer.
    if channel.current_outbuf_count > 0:
        channel.current_outbuf_count = adj.outbuf_high_watermark
    channel.requests.pop(0)
    request.close()
    channel.last_activity = time.time()
    return True
