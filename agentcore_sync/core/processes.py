"""Telling whether a process that wrote something is still alive.

Task records and worker slots name the process that owns them. A pid alone
is not enough: a dead worker's pid may be reused, and a killed process stays
a zombie until its parent reaps it. The identity is the pid with its start
time, and a zombie has none.
"""

from __future__ import annotations

import os


def process_identity(pid: int) -> str | None:
    """``pid`` and its start time, so that a reused pid is not mistaken for its old owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return None  # killed, and not yet reaped by its parent
        return f"{pid}:{int(fields[19])}"
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return str(pid)


def is_alive(pid: int) -> bool:
    return process_identity(pid) is not None
