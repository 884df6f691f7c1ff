"""What ``invoke`` remembers per agent, for the next ``invoke`` and for ``monitor``.

The managed runtime routes every invocation carrying one session id to one
microVM, and each invocation resets that session's idle timeout. ``invoke``
therefore keeps the session id it used for an agent (so successive calls land in
one session, as a client passing ``runtimeSessionId`` does) and the time of the
last invocation, which ``monitor``, running in another terminal, reads to reset
its idle countdown. One small JSON file per agent, under the user's cache
directory (``$XDG_CACHE_HOME``, else ``~/.cache``), written atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ..managed.client import is_loopback


@dataclass
class SessionState:
    url: str
    session_id: str
    #: When ``invoke`` last got an answer (unix seconds).
    last_invocation: float | None = None
    #: Invocations made through ``invoke`` with this session id.
    invocations: int = 0


def state_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "agentcore_sync" / "cli"


def state_path(base_url: str) -> Path:
    """One file per agent: ``last_invocation-<host>_<port>[_<prefix>].json``.

    The loopback names (127.0.0.1, localhost, ::1) are one agent, so that
    ``invoke localhost:8080`` resets the countdown of ``monitor 127.0.0.1:8080``.
    """
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or "localhost"
    if is_loopback(host):
        host = "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{host}_{port}{parts.path}").strip("_")
    return state_dir() / f"last_invocation-{key}.json"


def load(base_url: str) -> SessionState | None:
    """The state saved for this agent; ``None`` when there is none or it is unreadable."""
    try:
        data = json.loads(state_path(base_url).read_text(encoding="utf-8"))
        return SessionState(
            url=str(data["url"]),
            session_id=str(data["session_id"]),
            last_invocation=(
                float(data["last_invocation"]) if data.get("last_invocation") is not None else None
            ),
            invocations=int(data.get("invocations", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(state: SessionState) -> None:
    path = state_path(state.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a temporary file, then renamed: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(state), out)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def new_session_id() -> str:
    """A fresh session id: a uuid4, 36 characters (the managed runtime wants at least 33)."""
    return str(uuid.uuid4())


def session_for(base_url: str, session_id: str | None, new: bool) -> str:
    """The session id an ``invoke`` uses: the one given, a new one, or the agent's current one."""
    if session_id:
        return session_id
    state = None if new else load(base_url)
    return state.session_id if state is not None else new_session_id()


def record_invocation(base_url: str, session_id: str, *, count: bool) -> None:
    """Note that an invocation with ``session_id`` was just answered (``count``: a new one)."""
    state = load(base_url)
    if state is None or state.session_id != session_id:
        state = SessionState(url=base_url, session_id=session_id)
    state.last_invocation = time.time()
    if count:
        state.invocations += 1
    with contextlib.suppress(OSError):  # a read-only cache must not fail the invocation
        save(state)
