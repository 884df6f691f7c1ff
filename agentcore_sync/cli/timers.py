"""The session timers' options, the same for ``monitor`` and ``emulate``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..managed.durations import Duration
from ..managed.lifecycle import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_STUCK_AFTER,
    LIFECYCLE_MAX,
    LIFECYCLE_MIN,
)

F = TypeVar("F", bound=Callable[..., Any])


def timer_options(short_ok: bool) -> Callable[[F], F]:
    """``--idle-timeout``, ``--max-lifetime`` and ``--stuck-after``. The first two take
    the managed runtime's range, or (``short_ok``) anything shorter too, for tests."""
    if short_ok:
        bounds = Duration(min=0, max=LIFECYCLE_MAX, min_open=True)
        note = f"under {LIFECYCLE_MIN} s is accepted for tests, with a warning"
    else:
        bounds = Duration(min=LIFECYCLE_MIN, max=LIFECYCLE_MAX)
        note = f"{LIFECYCLE_MIN}-{LIFECYCLE_MAX} s"
    options = [
        click.option(
            "--idle-timeout",
            type=bounds,
            default=DEFAULT_IDLE_TIMEOUT,
            show_default="900 (15m)",
            help=f"The session's idleRuntimeSessionTimeout: {note} (also 15m, 1h...).",
        ),
        click.option(
            "--max-lifetime",
            type=bounds,
            default=DEFAULT_MAX_LIFETIME,
            show_default="28800 (8h)",
            help=f"The session's maxLifetime, at least the idle timeout: {note} (also 8h...).",
        ),
        click.option(
            "--stuck-after",
            type=Duration(min=0, min_open=True),
            default=DEFAULT_STUCK_AFTER,
            show_default="600 (10m)",
            help="Warn when HealthyBusy lasts this long with no task starting or finishing.",
        ),
    ]

    def apply(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return apply
