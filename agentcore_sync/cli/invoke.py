"""``agentcore-sync invoke [URL] PAYLOAD``: call an agent as the managed runtime does.

The request carries what AgentCore Runtime sends: the session id (kept per
agent, so successive calls share a session), a fresh request id, and any
``X-Amzn-Bedrock-AgentCore-Runtime-Custom-*`` headers. A JSON answer is printed
as JSON; a Server-Sent Events answer is printed one event per line as each
event arrives.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Iterator
from typing import IO, Any

import click

from ..managed.client import AgentClient, AgentUnreachable, Reply, agent_url
from ..models import CUSTOM_HEADER_PREFIX, REQUEST_ID_HEADER, SESSION_HEADER
from . import sessions

#: The managed runtime's limit for a synchronous request (15 minutes).
DEFAULT_TIMEOUT = 900.0
#: The shortest ``runtimeSessionId`` InvokeAgentRuntime accepts.
MIN_SESSION_ID_LENGTH = 33

#: A port, ``:port``, ``host:port[/path]`` or an http(s) URL: what ``agent_url`` reads.
_AGENT_ADDRESS = re.compile(r":?\d{1,5}|[\w.-]+:\d{1,5}(/\S*)?|https?://\S+", re.ASCII)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_STREAM_ERROR_MESSAGE = "An error occurred during streaming"


@click.command(short_help="Call an agent with the managed runtime's headers.")
@click.argument("arguments", nargs=-1, metavar="[URL] PAYLOAD")
@click.option(
    "--session-id",
    metavar="ID",
    help="Session id to send; by default the one this agent was last invoked with, or a new one.",
)
@click.option("--new-session", is_flag=True, help="Start a new session (a new session id).")
@click.option("--request-id", metavar="ID", help="Request id to send (a new uuid4 by default).")
@click.option(
    "-c",
    "--custom",
    "custom_headers",
    multiple=True,
    metavar="NAME=VALUE",
    help=f"Send header {CUSTOM_HEADER_PREFIX}NAME: VALUE (repeatable).",
)
@click.option(
    "-H",
    "--header",
    "raw_headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Send any other header, e.g. -H 'Authorization: Bearer ...' (repeatable).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for an answer, or between two streamed events.",
)
@click.option("--compact", is_flag=True, help="Print a JSON answer on one line.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Show the request headers and the status on stderr."
)
def invoke(
    arguments: tuple[str, ...],
    session_id: str | None,
    new_session: bool,
    request_id: str | None,
    custom_headers: tuple[str, ...],
    raw_headers: tuple[str, ...],
    timeout: float,
    compact: bool,
    verbose: bool,
) -> None:
    """Send PAYLOAD (JSON; '-' reads stdin, '@FILE' a file) to the agent at URL.

    URL defaults to $AGENTCORE_SYNC_URL, else http://127.0.0.1:8080; '8080' and
    'localhost:8080' work too. Examples:

    \b
      agentcore-sync invoke '{"prompt": "Hello"}'
      agentcore-sync invoke localhost:9000 '{"action": "stream"}' -c Tenant=acme
    """
    if len(arguments) == 1:
        url_text, payload_text = None, arguments[0]
        if _names_an_agent(payload_text):
            raise click.UsageError(
                f"PAYLOAD is missing: {payload_text!r} reads as the agent's URL. Give the "
                f'payload after it, e.g. invoke {payload_text} \'{{"prompt": "Hello"}}\' '
                f"(to send the number {payload_text} itself: invoke URL {payload_text})"
                if payload_text.isdigit()
                else f"PAYLOAD is missing: {payload_text!r} reads as the agent's URL. Give the "
                f'payload after it, e.g. invoke {payload_text} \'{{"prompt": "Hello"}}\''
            )
    elif len(arguments) == 2:
        url_text, payload_text = arguments
    else:
        raise click.UsageError(
            "invoke takes a PAYLOAD, optionally after the agent's URL, "
            f'e.g. invoke \'{{"prompt": "Hello"}}\'; got {len(arguments)} arguments'
        )
    try:
        base_url = agent_url(url_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    body = _payload(payload_text)
    session = sessions.session_for(base_url, session_id, new_session)
    if len(session) < MIN_SESSION_ID_LENGTH:
        click.echo(
            f"note: the managed runtime requires session ids of at least "
            f"{MIN_SESSION_ID_LENGTH} characters; {session!r} has {len(session)}",
            err=True,
        )
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        SESSION_HEADER: session,
        REQUEST_ID_HEADER: request_id or str(uuid.uuid4()),
    }
    headers.update(_custom_headers(custom_headers))
    headers.update(_raw_headers(raw_headers))
    if verbose:
        click.echo(f"> POST {base_url}/invocations", err=True)
        for name, value in headers.items():
            click.echo(f"> {name}: {value}", err=True)

    client = AgentClient(base_url)
    try:
        reply = client.post("/invocations", body, headers, timeout)
    except AgentUnreachable as exc:
        raise click.ClickException(str(exc)) from None
    sessions.record_invocation(base_url, session, count=True)
    if verbose:
        click.echo(f"< HTTP {reply.status} {reply.content_type}", err=True)
    try:
        if reply.content_type == "text/event-stream":
            stream_ok = _print_events(reply, sys.stdout)
        else:
            _print_answer(reply.read_text(), compact)
            stream_ok = True
    except BrokenPipeError:
        raise  # our reader went away (invoke ... | head): click exits quietly
    except (TimeoutError, OSError) as exc:
        raise click.ClickException(f"the answer was cut off: {exc}") from None
    finally:
        reply.body.close()
        # The invocation lasted until its answer ended: that is when the idle countdown restarts.
        sessions.record_invocation(base_url, session, count=False)
    if not 200 <= reply.status < 300:
        raise click.ClickException(f"the agent answered HTTP {reply.status}")
    if not stream_ok:
        raise click.ClickException("the stream ended with an error event")


def _names_an_agent(text: str) -> bool:
    """Whether a lone argument is an agent's address rather than a payload: a port
    (``8094`` is JSON, a number, but a port is what users mean), ``host:port``
    or an http(s) URL."""
    return bool(_AGENT_ADDRESS.fullmatch(text))


def _payload(text: str) -> bytes:
    """The request body: PAYLOAD, stdin or a file, checked to be JSON."""
    source = "PAYLOAD"
    if text == "-":
        text, source = sys.stdin.read(), "stdin"
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as file:
                text, source = file.read(), text[1:]
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {text[1:]}: {exc.strerror}", param_hint="PAYLOAD"
            ) from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{source} is not valid JSON ({exc}). The agent takes a JSON body: quote it "
            'for the shell, e.g. \'{"prompt": "Hello"}\'',
            param_hint="PAYLOAD",
        ) from None
    return text.encode("utf-8")


def _custom_headers(items: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if name.lower().startswith(CUSTOM_HEADER_PREFIX.lower()):
            name = name[len(CUSTOM_HEADER_PREFIX) :]
        if not sep or not name or not _TOKEN.match(name) or "\n" in value or "\r" in value:
            raise click.BadParameter(
                f"{item!r} is not NAME=VALUE with a header-name NAME (letters, digits, '-')",
                param_hint="--custom",
            )
        headers[CUSTOM_HEADER_PREFIX + name] = value
    return headers


def _raw_headers(items: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name) or "\n" in value or "\r" in value:
            raise click.BadParameter(f"{item!r} is not 'NAME: VALUE'", param_hint="--header")
        headers[name] = value.strip()
    return headers


def _print_answer(text: str, compact: bool) -> None:
    try:
        value = json.loads(text)
    except ValueError:
        click.echo(text)  # not JSON (a handler may return any flask Response): as it came
        return
    if compact:
        click.echo(json.dumps(value, ensure_ascii=False))
    else:
        click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _print_events(reply: Reply, out: IO[str]) -> bool:
    """Print each event's data on its own line as it arrives; ``False`` after an error event."""
    ok = True
    for data in sse_events(reply.body):
        out.write(data + "\n")
        out.flush()
        if _is_stream_error(data):
            ok = False
    return ok


def sse_events(stream: IO[bytes]) -> Iterator[str]:
    """The ``data`` of each Server-Sent Event read from ``stream``, as soon as it is complete."""
    data: list[str] = []
    while True:
        raw = stream.readline()
        if not raw:
            break
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _is_stream_error(data: str) -> bool:
    try:
        event: Any = json.loads(data)
    except ValueError:
        return False
    return (
        isinstance(event, dict)
        and event.get("message") == _STREAM_ERROR_MESSAGE
        and ("error" in event)
    )
