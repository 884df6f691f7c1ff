"""Per-request state: the ``RequestContext`` handed to handlers and the context
variables that carry request and session ids into logs and background work.

Context variables (not thread locals) are used because the same request can run
on a WSGI thread, on the runtime's event loop and in a background task; each of
those starts from a copy of the request's context.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..models import (
    ACCESS_TOKEN_HEADER,
    IDENTITY_WAT_HEADER,
    OAUTH2_CALLBACK_URL_HEADER,
    REQUEST_ID_HEADER,
    SESSION_HEADER,
)
from .headers import forwarded_headers

request_id_var: ContextVar[str | None] = ContextVar("agentcore_request_id", default=None)
session_id_var: ContextVar[str | None] = ContextVar("agentcore_session_id", default=None)
_workload_access_token_var: ContextVar[str | None] = ContextVar(
    "agentcore_workload_access_token", default=None
)
_oauth2_callback_url_var: ContextVar[str | None] = ContextVar(
    "agentcore_oauth2_callback_url", default=None
)
_request_headers_var: ContextVar[dict[str, str] | None] = ContextVar(
    "agentcore_request_headers", default=None
)

# Ids end up in log lines, result records and response headers, so only a
# bounded run of visible ASCII is accepted: no spaces, no CR/LF, no controls.
MAX_ID_LENGTH = 256
_VALID_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_LENGTH}}}")


class InvalidHeader(ValueError):
    """A request header that cannot be accepted (bad characters or too long)."""

    def __init__(self, header: str) -> None:
        super().__init__(
            f"Invalid {header} header: expected 1 to {MAX_ID_LENGTH} visible ASCII characters"
        )
        self.header = header


@dataclass
class RequestContext:
    """What a handler taking a ``context`` parameter learns about its request."""

    session_id: str | None = None
    request_id: str | None = None
    request_headers: dict[str, str] | None = None
    request: Any = field(default=None, repr=False)


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


_SESSION_KEY = _environ_key(SESSION_HEADER)
_REQUEST_ID_KEY = _environ_key(REQUEST_ID_HEADER)
_IDENTITY_WAT_KEY = _environ_key(IDENTITY_WAT_HEADER)
_ACCESS_TOKEN_KEY = _environ_key(ACCESS_TOKEN_HEADER)
_OAUTH2_CALLBACK_URL_KEY = _environ_key(OAUTH2_CALLBACK_URL_HEADER)


def _valid_id(environ: dict[str, Any], key: str, header: str) -> str | None:
    value = environ.get(key)
    if value is None:
        return None
    if not _VALID_ID.fullmatch(value):
        raise InvalidHeader(header)
    return value


# The version (4) and variant (RFC 9562) bits of a version-4 UUID, as integer masks.
_UUID4_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)
_UUID4_SET = 0x4000 << 64 | 0x8000 << 48


def _new_request_id() -> str:
    # A version-4 UUID from the non-blocking generator: an id, not a secret.
    # Formatted here, as str(uuid.UUID(...)) would: its checks cost more than the id.
    digits = "%032x" % (random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def enter_request(environ: dict[str, Any], request: Any = None) -> RequestContext:
    """Read the AgentCore headers of a WSGI ``environ`` into the context variables.

    ``request`` is the web framework's request object, handed to handlers as
    ``context.request``. Raises ``InvalidHeader`` for a session or request id
    that is not a bounded run of visible ASCII, before the id is logged or
    stored anywhere. Headers are read from the environ (case-insensitive by
    construction).
    """
    session_id = _valid_id(environ, _SESSION_KEY, SESSION_HEADER)
    request_id = _valid_id(environ, _REQUEST_ID_KEY, REQUEST_ID_HEADER) or _new_request_id()
    request_id_var.set(request_id)
    session_id_var.set(session_id)
    token = environ.get(_IDENTITY_WAT_KEY) or environ.get(_ACCESS_TOKEN_KEY)
    _workload_access_token_var.set(token)
    _oauth2_callback_url_var.set(environ.get(_OAUTH2_CALLBACK_URL_KEY))
    request_headers = forwarded_headers(environ) or None
    _request_headers_var.set(request_headers)
    return RequestContext(
        session_id=session_id,
        request_id=request_id,
        request_headers=request_headers,
        request=request,
    )


class BedrockAgentCoreContext:
    """Read access to the current request's identity, as the official SDK offers it."""

    @staticmethod
    def get_request_id() -> str | None:
        return request_id_var.get()

    @staticmethod
    def get_session_id() -> str | None:
        return session_id_var.get()

    @staticmethod
    def get_workload_access_token() -> str | None:
        return _workload_access_token_var.get()

    @staticmethod
    def get_oauth2_callback_url() -> str | None:
        return _oauth2_callback_url_var.get()

    @staticmethod
    def get_request_headers() -> dict[str, str] | None:
        return _request_headers_var.get()

    @staticmethod
    def set_request_context(request_id: str, session_id: str | None = None) -> None:
        request_id_var.set(request_id)
        session_id_var.set(session_id)

    @staticmethod
    def set_workload_access_token(token: str) -> None:
        _workload_access_token_var.set(token)
