"""Turning whatever a handler returns into JSON, never failing.

A handler's return value goes to the client; a value that ``json`` cannot
encode is not the client's fault and must not become a 500. Fallbacks, in
order: pydantic ``model_dump()``, dataclasses, ``__dict__``, ``str()``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any


def _fallback(obj: Any) -> Any:
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        try:
            return model_dump(mode="json")
        except TypeError:
            return model_dump()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if hasattr(obj, "__dict__"):
        return vars(obj)
    return str(obj)


# json.dumps with options builds an encoder per call; one (stateless) serves all.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_fallback)


def dumps(obj: Any) -> str:
    """``obj`` as a JSON text, with the fallbacks above for what ``json`` refuses."""
    try:
        return _ENCODER.encode(obj)
    except (TypeError, ValueError, RecursionError):
        # Circular references, keys that are not strings, runaway nesting:
        # the object's text is still a truthful answer.
        try:
            return json.dumps(str(obj), ensure_ascii=False)
        except Exception:
            return json.dumps({"error": "Serialization failed", "type": type(obj).__name__})


def encode(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON bytes, never failing.

    Text that UTF-8 cannot carry (a lone surrogate decoded from a ``\\ud800``
    escape) is written escaped, as JSON allows.
    """
    text = dumps(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(json.loads(text), ensure_ascii=True).encode("ascii")


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data (dicts, lists, strings, numbers), for result records."""
    return json.loads(dumps(obj))


def sse_event(obj: Any) -> bytes:
    """One Server-Sent Event carrying ``obj`` as JSON."""
    return b"data: " + encode(obj) + b"\n\n"
