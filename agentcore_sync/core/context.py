"""Per-request state: the ``RequestContext`` handed to handlers, and the context
variables behind ``BedrockAgentCoreContext`` that carry the request's ids, token
and headers into logs, background work and the user's own threads.

Context variables (not thread locals) are used because the same request can run
on a WSGI thread, on the runtime's event loop and in a background task; each of
those starts from a copy of the request's context.
"""

from __future__ import annotations

import contextvars
import functools
import random
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from ..models import (
    ACCESS_TOKEN_HEADER,
    BAGGAGE_HEADER,
    IDENTITY_WAT_HEADER,
    OAUTH2_CALLBACK_URL_HEADER,
    REQUEST_ID_HEADER,
    SESSION_HEADER,
    ConfigBundleRef,
)
from .bundles import NO_BAGGAGE, Baggage, bundle_config, read_baggage
from .headers import forwarded_headers
from .sdk_context import official_context

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
_baggage_var: ContextVar[Baggage] = ContextVar("agentcore_baggage", default=NO_BAGGAGE)

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
_BAGGAGE_KEY = _environ_key(BAGGAGE_HEADER)


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
    construction). Every variable is set, absent values to None, and the
    official SDK's context too when it is installed.
    """
    session_id = _valid_id(environ, _SESSION_KEY, SESSION_HEADER)
    request_id = _valid_id(environ, _REQUEST_ID_KEY, REQUEST_ID_HEADER) or _new_request_id()
    token = environ.get(_IDENTITY_WAT_KEY) or environ.get(_ACCESS_TOKEN_KEY)
    callback_url = environ.get(_OAUTH2_CALLBACK_URL_KEY)
    request_headers = forwarded_headers(environ) or None
    baggage = read_baggage(environ.get(_BAGGAGE_KEY))
    request_id_var.set(request_id)
    session_id_var.set(session_id)
    _workload_access_token_var.set(token)
    _oauth2_callback_url_var.set(callback_url)
    _request_headers_var.set(request_headers)
    _baggage_var.set(baggage)
    official = official_context()
    if official is not None:
        official.fill(request_id, session_id, token, callback_url, request_headers, baggage)
    return RequestContext(
        session_id=session_id,
        request_id=request_id,
        request_headers=request_headers,
        request=request,
    )


P = ParamSpec("P")
R = TypeVar("R")


def copy_request_context(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` later, in another thread, with the current request's context.

    Call it while serving a request (in a handler or in what it calls) and hand
    the result to ``threading.Thread(target=...)``, an executor's ``submit`` or
    anything else that calls it elsewhere: there ``BedrockAgentCoreContext``
    (and the official SDK's, when installed) answers with this request's ids,
    token and headers, and log lines carry its ids. As Flask's
    ``copy_current_request_context``, but for the request's context variables
    only. Each call runs in a fresh copy of the context captured here, so the
    wrapper may be called several times, also at once; what ``func`` sets in it
    stays in that call.
    """
    captured = contextvars.copy_context()

    @functools.wraps(func)
    def in_request_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(func, *args, **kwargs)

    return in_request_context


class BedrockAgentCoreContext:
    """The current request's ids, token, headers and configuration bundle.

    The official SDK's class of the same name, with the same class methods:
    readable anywhere the request's context is (its handler, the background
    work it starts, threads run with ``copy_request_context``), None outside a
    request. The setters also set the official SDK's context when it is
    installed, so that its identity decorators see what is set here.
    """

    @classmethod
    def set_workload_access_token(cls, token: str) -> None:
        _workload_access_token_var.set(token)
        _set_official("set_workload_access_token", token)

    @classmethod
    def get_workload_access_token(cls) -> str | None:
        return _workload_access_token_var.get()

    @classmethod
    def set_oauth2_callback_url(cls, workload_callback_url: str) -> None:
        _oauth2_callback_url_var.set(workload_callback_url)
        _set_official("set_oauth2_callback_url", workload_callback_url)

    @classmethod
    def get_oauth2_callback_url(cls) -> str | None:
        return _oauth2_callback_url_var.get()

    @classmethod
    def set_request_context(cls, request_id: str, session_id: str | None = None) -> None:
        request_id_var.set(request_id)
        session_id_var.set(session_id)
        _set_official("set_request_context", request_id, session_id)

    @classmethod
    def get_request_id(cls) -> str | None:
        return request_id_var.get()

    @classmethod
    def get_session_id(cls) -> str | None:
        return session_id_var.get()

    @classmethod
    def set_request_headers(cls, headers: dict[str, str]) -> None:
        _request_headers_var.set(headers)
        _set_official("set_request_headers", headers)

    @classmethod
    def get_request_headers(cls) -> dict[str, str] | None:
        return _request_headers_var.get()

    @classmethod
    def set_routing_experiment(cls, arn: str | None, variant: str | None) -> None:
        """The gateway's routing experiment of this request (read from its baggage)."""
        baggage = _baggage_var.get()
        _baggage_var.set(Baggage(baggage.bundle_ref, arn, variant))
        _set_official("set_routing_experiment", arn, variant)

    @classmethod
    def get_routing_experiment_arn(cls) -> str | None:
        return _baggage_var.get().experiment_arn

    @classmethod
    def get_routing_experiment_variant(cls) -> str | None:
        return _baggage_var.get().experiment_variant

    @classmethod
    def set_config_bundle_ref(cls, ref: ConfigBundleRef | None) -> None:
        baggage = _baggage_var.get()
        _baggage_var.set(Baggage(ref, baggage.experiment_arn, baggage.experiment_variant))
        official = official_context()
        if official is not None:
            official.set_config_bundle_ref(ref)

    @classmethod
    def get_config_bundle_ref(cls) -> ConfigBundleRef | None:
        """The configuration bundle version of this request, from its ``baggage`` header."""
        return _baggage_var.get().bundle_ref

    @classmethod
    def get_config_bundle(cls) -> dict[str, Any]:
        """This runtime's configuration in the request's bundle; ``{}`` without one.

        Fetched from the AgentCore control plane on the first call for a bundle
        version, then cached; the control plane's errors propagate.
        """
        ref = _baggage_var.get().bundle_ref
        return {} if ref is None else bundle_config(ref)


def _set_official(name: str, *args: Any) -> None:
    official = official_context()
    if official is not None:
        official.set(name, *args)
