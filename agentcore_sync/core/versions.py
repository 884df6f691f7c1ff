"""Version gates of the accelerators that reach into a library's internals.

The fast path (Flask), the inline ping (waitress, gunicorn) and the shipped
gunicorn worker rely on code that their libraries do not promise to keep. Each
is switched on only for the versions that CI tests it on, from the lowest
tested release to the end of its series; everywhere else, including
pre-releases, the plain path serves, through the libraries' public APIs.
Each decision is logged once, with the path taken and why.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass
from importlib import metadata

logger = logging.getLogger("agentcore_sync.versions")

_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?$")


def release(version: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of a final release; None for a pre-release or dev build."""
    match = _RELEASE.match(version)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


@dataclass(frozen=True)
class Gate:
    """Whether an accelerator runs on the installed version of its library."""

    accelerator: str
    library: str
    version: str | None
    lowest: tuple[int, int, int]
    on: bool

    def describe(self) -> str:
        tested = f"{'.'.join(map(str, self.lowest))} to {self.lowest[0]}.{self.lowest[1]}.x"
        if self.on:
            return f"{self.accelerator}: on ({self.library} {self.version}; tested on {tested})"
        return (
            f"{self.accelerator}: off, the plain path serves ({self.library} "
            f"{self.version or 'not installed'}; the accelerator is tested on {tested} only)"
        )


# _logged_lock guards _logged. Invariant: an accelerator is in _logged once its
# decision has been logged.
_logged_lock = threading.Lock()
_logged: set[str] = set()


@functools.cache
def gate(accelerator: str, library: str, lowest: tuple[int, int, int]) -> Gate:
    """The gate of ``accelerator`` on ``library``: on from ``lowest`` to the end of its series."""
    try:
        version: str | None = metadata.version(library)
    except metadata.PackageNotFoundError:
        version = None
    installed = release(version) if version else None
    on = installed is not None and lowest <= installed and installed[:2] == lowest[:2]
    return Gate(accelerator, library, version, lowest, on)


def log_once(decided: Gate) -> None:
    """Log the decision of ``decided`` the first time it matters."""
    with _logged_lock:
        if decided.accelerator in _logged:
            return
        _logged.add(decided.accelerator)
    logger.info("%s", decided.describe())


#: The request fast path (``web.fastpath``) builds Flask 3.1's request context itself.
FLASK_FAST_PATH = ("fast path for /ping and /invocations", "flask", (3, 1, 3))
#: waitress answers plain pings on its I/O thread, and its refusals in JSON.
WAITRESS_INLINE = ("waitress I/O-thread ping and JSON refusals", "waitress", (3, 0, 0))
#: The shipped gunicorn worker (gthread's connection handling) and its JSON refusals.
GUNICORN_WORKER = ("gunicorn worker with main-thread ping", "gunicorn", (27, 0, 1))
