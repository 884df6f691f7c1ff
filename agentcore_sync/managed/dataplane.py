"""The AgentCore Runtime data plane as boto3's ``bedrock-agentcore`` client calls it.

Two operations, read from botocore's model of the service: ``InvokeAgentRuntime``
(``POST /runtimes/{agentRuntimeArn}/invocations``) and ``StopRuntimeSession``
(``POST /runtimes/{agentRuntimeArn}/stopruntimesession``). Errors have the
service's rest-json shape: the type in ``x-amzn-ErrorType``, the status the model
gives it, ``{"message": ...}`` as the body, which botocore turns into the
client's exception of that name.

Nothing here does I/O: ``parse`` turns a request's method, path and headers
into an operation or a ``ServiceError``, and ``ServiceError.answer`` is the
status, headers and body to send.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..models import CUSTOM_HEADER_PREFIX, REQUEST_ID_HEADER, SESSION_HEADER

#: ``runtimeSessionId``'s length bounds in the service's model.
SESSION_ID_MIN = 33
SESSION_ID_MAX = 256
#: The largest payload the model allows (bytes).
PAYLOAD_MAX = 100_000_000

INVOKE_SUFFIX = "/invocations"
STOP_SUFFIX = "/stopruntimesession"
PREFIX = "/runtimes/"

#: Headers of an InvokeAgentRuntime request that the service hands to the agent.
_PASSED_TO_AGENT = (
    "Content-Type",
    "Accept",
    "X-Amzn-Trace-Id",
    "traceparent",
    "tracestate",
    "baggage",
    "Mcp-Session-Id",
    "Mcp-Protocol-Version",
    "Authorization",
)


class ErrorType(enum.Enum):
    """The service's errors, with the HTTP status its model gives each."""

    VALIDATION = ("ValidationException", 400)
    NOT_FOUND = ("ResourceNotFoundException", 404)
    THROTTLING = ("ThrottlingException", 429)
    RUNTIME_CLIENT = ("RuntimeClientError", 424)
    INTERNAL = ("InternalServerException", 500)
    UNKNOWN_OPERATION = ("UnknownOperationException", 404)

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]


class ServiceError(Exception):
    """An error answered as the service answers it."""

    def __init__(self, error: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message

    def answer(self, request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
        body = json.dumps({"message": self.message}).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", self.error.code),
            ("x-amzn-RequestId", request_id),
            ("Content-Length", str(len(body))),
        ]
        return self.error.status, headers, body


@dataclass(frozen=True)
class Invoke:
    """``InvokeAgentRuntime``: ``session_id`` is ``None`` when the caller gave none."""

    runtime_arn: str
    session_id: str | None
    #: What the agent receives besides the payload, spelled as the service spells it.
    agent_headers: dict[str, str] = field(default_factory=dict)
    content_length: int = 0


@dataclass(frozen=True)
class StopSession:
    """``StopRuntimeSession``."""

    runtime_arn: str
    session_id: str


def new_session_id() -> str:
    """A session id as the service makes one for a call that named none."""
    return str(uuid.uuid4())


def new_request_id() -> str:
    return str(uuid.uuid4())


def parse(method: str, path: str, headers: Any) -> Invoke | StopSession:
    """The operation a request asks for; ``ServiceError`` for anything else.

    ``path`` is decoded (``%2F`` in the ARN already ``/``); ``headers`` is any
    mapping with case-insensitive ``get`` (``email.message.Message``).
    """
    operation = None
    for suffix, kind in ((INVOKE_SUFFIX, Invoke), (STOP_SUFFIX, StopSession)):
        if path.startswith(PREFIX) and path.endswith(suffix):
            operation = kind
            arn = path[len(PREFIX) : -len(suffix)]
            break
    if operation is None or method != "POST":
        raise ServiceError(
            ErrorType.UNKNOWN_OPERATION,
            f"No operation is served at {method} {path[:200]}: this emulator serves "
            f"POST {PREFIX}{{agentRuntimeArn}}{INVOKE_SUFFIX} and "
            f"POST {PREFIX}{{agentRuntimeArn}}{STOP_SUFFIX}",
        )
    if not arn:
        raise _invalid("agentRuntimeArn", "Member must not be empty")
    session_id = headers.get(SESSION_HEADER)
    if session_id is not None:
        check_session_id(session_id)
    if operation is StopSession:
        if session_id is None:
            raise _invalid("runtimeSessionId", "Member must not be null")
        return StopSession(arn, session_id)
    return Invoke(
        arn, session_id, _agent_headers(headers), _content_length(headers.get("Content-Length"))
    )


def check_session_id(session_id: str) -> None:
    if len(session_id) < SESSION_ID_MIN:
        raise _invalid(
            "runtimeSessionId", f"Member must have length greater than or equal to {SESSION_ID_MIN}"
        )
    if len(session_id) > SESSION_ID_MAX:
        raise _invalid(
            "runtimeSessionId", f"Member must have length less than or equal to {SESSION_ID_MAX}"
        )


def _content_length(text: str | None) -> int:
    if text is None:
        raise ServiceError(
            ErrorType.VALIDATION,
            "The payload needs a Content-Length (boto3 sends one for bytes and str payloads)",
        )
    if not text.isdigit():
        raise ServiceError(ErrorType.VALIDATION, f"Content-Length {text[:40]!r} is not a number")
    length = int(text)
    if length > PAYLOAD_MAX:
        raise _invalid("payload", f"Member must have length less than or equal to {PAYLOAD_MAX}")
    return length


def _agent_headers(headers: Any) -> dict[str, str]:
    passed = {name: headers.get(name) for name in _PASSED_TO_AGENT if headers.get(name)}
    for name, value in headers.items():
        if name.lower().startswith(CUSTOM_HEADER_PREFIX.lower()):
            passed[name] = value
    passed[REQUEST_ID_HEADER] = new_request_id()
    return passed


def _invalid(member: str, constraint: str) -> ServiceError:
    return ServiceError(
        ErrorType.VALIDATION,
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
        f"{constraint}",
    )


def agent_error(status: int, body: str, log_path: str) -> ServiceError:
    """The agent answered an error status: the service passes it on as a client error."""
    detail = body.strip()[:1000]
    return ServiceError(
        ErrorType.RUNTIME_CLIENT,
        f"Received error ({status}) from runtime. Please check the session's log: {log_path}"
        + (f". The agent answered: {detail}" if detail else ""),
    )


def start_failed(reason: str, log_path: str, log_tail: str) -> ServiceError:
    """The session's agent did not become healthy."""
    tail = f" Last lines of its log:\n{log_tail}" if log_tail else ""
    return ServiceError(
        ErrorType.RUNTIME_CLIENT,
        f"Runtime initialization failed: {reason}. Its log: {log_path}.{tail}",
    )


def too_many_sessions(limit: int) -> ServiceError:
    return ServiceError(
        ErrorType.THROTTLING,
        f"Rate exceeded: {limit} sessions are running, the most this emulator holds "
        "(emulate --max-sessions); stop one with StopRuntimeSession or wait for one to end",
    )


def no_such_session(session_id: str) -> ServiceError:
    return ServiceError(ErrorType.NOT_FOUND, f"Session {session_id} not found: it is not running")
