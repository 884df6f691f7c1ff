"""Which request headers reach agent code.

The managed runtime forwards only some headers to the agent; agent code written
against it must see the same set here, so ``RequestContext.request_headers`` is
filtered by the same rules: standard HTTP headers are held back, and so is the
AWS-reserved ``X-Amz-*`` / ``X-Amzn-*`` space, except the custom-header prefix and
the workload identity token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import AUTHORIZATION_HEADER, CUSTOM_HEADER_PREFIX, IDENTITY_WAT_HEADER

# Grouped by purpose; every name is compared lower-cased.
_STANDARD_HEADERS = {
    "content negotiation": (
        "accept accept-charset accept-encoding accept-language content-type content-length "
        "content-encoding content-language content-location content-range"
    ),
    "caching": (
        "cache-control etag expires if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified pragma vary"
    ),
    "connection": "connection keep-alive proxy-connection upgrade te trailer transfer-encoding",
    "request and server info": (
        "host user-agent referer from range accept-ranges server date location retry-after link"
    ),
    "authentication": "proxy-authorization www-authenticate",
    "cookies": "cookie set-cookie",
    "security policy": (
        "content-security-policy content-security-policy-report-only strict-transport-security "
        "x-content-type-options x-frame-options x-xss-protection referrer-policy "
        "permissions-policy cross-origin-embedder-policy cross-origin-opener-policy "
        "cross-origin-resource-policy clear-site-data feature-policy expect-ct "
        "public-key-pins public-key-pins-report-only"
    ),
    "cors": (
        "origin access-control-allow-origin access-control-allow-methods "
        "access-control-allow-headers access-control-allow-credentials "
        "access-control-expose-headers access-control-max-age access-control-request-method "
        "access-control-request-headers"
    ),
    "client hints": (
        "accept-ch accept-ch-lifetime dpr width viewport-width downlink ect rtt save-data"
    ),
    "proxy and forwarding": (
        "via forwarded x-forwarded-for x-forwarded-host x-forwarded-proto x-real-ip "
        "x-requested-with x-csrf-token true-client-ip x-client-ip x-cluster-client-ip "
        "x-originating-ip x-source-ip x-original-url x-original-host x-rewrite-url "
        "cf-ray cf-connecting-ip x-cache x-served-by"
    ),
    "websocket": (
        "sec-websocket-key sec-websocket-accept sec-websocket-version sec-websocket-protocol "
        "sec-websocket-extensions"
    ),
}
WITHHELD_HEADERS = frozenset(name for group in _STANDARD_HEADERS.values() for name in group.split())

_CUSTOM_PREFIX = CUSTOM_HEADER_PREFIX.lower()
_IDENTITY_WAT = IDENTITY_WAT_HEADER.lower()
_AUTHORIZATION = AUTHORIZATION_HEADER.lower()


def is_forwarded(name: str) -> bool:
    """Whether the managed runtime lets header ``name`` through to agent code."""
    lower = name.lower()
    if lower in WITHHELD_HEADERS:
        return False
    if lower.startswith("x-amz-"):
        return lower == _IDENTITY_WAT
    if lower.startswith("x-amzn-"):
        return lower.startswith(_CUSTOM_PREFIX)
    return True


def _forwarded_name(environ_key: str) -> str | None:
    """The name agent code sees the WSGI value ``environ_key`` under, or None.

    None for what is no header (``wsgi.input``, ``PATH_INFO``...) and for a
    withheld header. Named as the official SDK names them, so that lookups
    written for it find them: lower case (its ASGI server hands it lower-cased
    names, as HTTP/2 sends them), with ``Authorization`` under its canonical name.
    """
    if not environ_key.startswith("HTTP_"):
        return None
    name = environ_key[5:].replace("_", "-").lower()
    if name == _AUTHORIZATION:
        return AUTHORIZATION_HEADER
    return name if is_forwarded(name) else None


# _forwarded_name's answers by environ key: a server sees the same few keys
# again and again. Bounded, since header names are the client's to choose.
_NAMES: dict[str, str | None] = {}
_MAX_NAMES = 1024


def forwarded_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The headers of a WSGI request that agent code sees."""
    kept: dict[str, str] = {}
    names = _NAMES
    for key, value in environ.items():
        try:
            name = names[key]
        except KeyError:
            name = _forwarded_name(key)
            if len(names) < _MAX_NAMES:
                names[key] = name
        if name is not None:
            kept[name] = value
    return kept
