"""Durations as people type and read them: ``90``, ``15m``, ``8h``, ``1h30m`` and ``1:30:00``."""

from __future__ import annotations

import re
import time
from typing import Any

import click

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds, or parts such as ``1h30m`` or ``45s``."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    if not text or _PART.sub("", text):
        raise ValueError(f"{text!r} is not a duration (try 90, 15m, 8h or 1h30m)")
    return sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(text))


def fmt_duration(seconds: float) -> str:
    """``h:mm:ss``; negative durations read as zero."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def clock(at: float) -> str:
    """The local wall-clock time of ``at`` (unix seconds), ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(at))


class Duration(click.ParamType):
    """A click parameter in seconds that also accepts ``15m``, ``8h``..., within bounds."""

    name = "duration"

    def __init__(
        self, min: float | None = None, max: float | None = None, min_open: bool = False
    ) -> None:
        self.min = min
        self.max = max
        self.min_open = min_open

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        too_low = self.min is not None and (
            seconds <= self.min if self.min_open else seconds < self.min
        )
        too_high = self.max is not None and seconds > self.max
        if too_low or too_high:
            self.fail(f"{value} is {seconds:g} seconds; {self._bounds()}", param, ctx)
        return seconds

    def _bounds(self) -> str:
        if self.min is not None and self.max is not None:
            return f"it must be between {self.min:g} and {self.max:g} seconds"
        if self.min is not None:
            return (
                f"it must be more than {self.min:g} seconds"
                if self.min_open
                else (f"it must be at least {self.min:g} seconds")
            )
        return f"it must be at most {self.max:g} seconds"
