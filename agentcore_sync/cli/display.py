"""Drawing ``monitor``'s and ``emulate``'s views: live screens on a terminal, lines otherwise.

On a terminal, each poll redraws the screen in place with plain ANSI sequences
(cursor home, erase line, erase below: no flicker, no curses). Anywhere else
(a pipe, a file, CI), each poll appends one line, and each event (a stuck
session, the end of the session) is written once on a line of its own.
``NO_COLOR`` turns colours off.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from typing import IO

import click

from ..managed.durations import clock, fmt_duration
from ..managed.emulator import SessionState, SessionSummary
from ..managed.lifecycle import HEALTHY_BUSY, View

CLEAR = "\x1b[2J\x1b[H"
HOME = "\x1b[H"
ERASE_LINE = "\x1b[K"
ERASE_BELOW = "\x1b[J"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"
BELL = "\a"


def status_text(view: View) -> str:
    probe = view.probe
    if probe.status is None:
        return f"no answer: {probe.error}"
    held = ""
    if probe.changed_at is not None:
        held = (
            f" held {fmt_duration(probe.at - probe.changed_at)} (since {clock(probe.changed_at)})"
        )
    return probe.status + held


#: Task names listed on the screen; the rest are counted.
MAX_GROUPS = 8


def tasks_summary(view: View) -> str:
    tasks = view.probe.tasks
    if tasks is None:
        return f"not visible: {view.probe.tasks_note}"
    text = f"{tasks.running} running, {tasks.queued} queued"
    if tasks.overdue:
        text += f", {tasks.overdue} OVERDUE (past their maximum duration)"
    return text


def task_groups(view: View) -> list[str]:
    """One entry per task name, oldest first: ``name x2 oldest 0:01:10``."""
    tasks = view.probe.tasks
    if tasks is None:
        return []
    groups = [
        f"{group.name} x{group.count} oldest {fmt_duration(group.oldest)}"
        for group in tasks.groups[:MAX_GROUPS]
    ]
    if len(tasks.groups) > MAX_GROUPS:
        groups.append(f"... {len(tasks.groups) - MAX_GROUPS} more names")
    return groups


def idle_text(view: View) -> str:
    if view.ended is not None:
        return "ran out: session ended" if view.ended.reason == "idle timeout" else "-"
    if view.idle_left is None:
        return f"{view.idle_hold} (resets to {fmt_duration(view.settings.idle_timeout)})"
    return f"{fmt_duration(view.idle_left)} left of {fmt_duration(view.settings.idle_timeout)}"


def lifetime_text(view: View) -> str:
    if view.ended is not None and view.ended.reason == "maximum lifetime":
        return "reached: session ended"
    if view.lifetime_left is None:
        return "-" if view.ended is None else "- (session ended)"
    return f"{fmt_duration(view.lifetime_left)} left of {fmt_duration(view.settings.max_lifetime)}"


def invocation_text(view: View) -> str:
    tasks = view.probe.tasks
    parts = []
    if view.last_invocation is not None:
        parts.append(f"last {fmt_duration(view.probe.at - view.last_invocation)} ago")
    elif tasks is None or not tasks.in_flight:
        parts.append("none since the session started")
    if tasks is not None:
        parts.append(f"{tasks.in_flight} in flight")
        parts.append(f"{int(tasks.invocations)} since the agent started")
    return ", ".join(parts)


class LineDisplay:
    """One line per poll; events on lines of their own. For pipes, files and logs."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def start(self, title: str) -> None:
        self._write(title)

    def draw(self, view: View) -> None:
        for event in view.events:
            self._write(event)
        parts = [clock(view.probe.at), status_text(view)]
        if view.probe.status is not None:
            groups = task_groups(view)
            parts.append(
                "tasks " + tasks_summary(view) + (f" ({', '.join(groups)})" if groups else "")
            )
            if view.ended is None:
                parts.append("idle " + idle_text(view))
                parts.append("lifetime " + lifetime_text(view))
            else:
                parts.append(f"ENDED ({view.ended.reason})")
            if view.stuck:
                parts.append(
                    f"STUCK? no task progress for {fmt_duration(view.busy_unchanged_for or 0)}"
                )
        self._write(" | ".join(parts))

    def close(self) -> None:
        self.out.flush()

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class ScreenDisplay:
    """The whole view redrawn in place at each poll, for a terminal."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.color = not os.environ.get("NO_COLOR")
        self.title = ""
        self._warned: set[str] = set()
        self._history: list[str] = []

    def start(self, title: str) -> None:
        self.title = title
        self.out.write(HIDE_CURSOR + CLEAR)
        self.out.flush()

    def _style(self, text: str, **style: object) -> str:
        return click.style(text, **style) if self.color else text  # type: ignore[arg-type]

    def draw(self, view: View) -> None:
        width, height = shutil.get_terminal_size((100, 30))
        probe = view.probe
        for event in view.events:  # the first sentence: the rest is on the screen
            self._history.append(f"{clock(probe.at)}  {event.split('. ')[0]}")
        del self._history[:-4]
        rows: list[str] = [
            self._style(self.title, bold=True),
            f"{clock(probe.at)}   idle timeout {fmt_duration(view.settings.idle_timeout)}, "
            f"max lifetime {fmt_duration(view.settings.max_lifetime)}, "
            f"stuck after {fmt_duration(view.settings.stuck_after)}",
            "",
        ]
        if probe.status is None:
            rows.append(self._label("Status") + self._style(status_text(view), fg="red", bold=True))
        else:
            color = "yellow" if probe.status == HEALTHY_BUSY else "green"
            rows.append(self._label("Status") + self._style(status_text(view), fg=color, bold=True))
            rows.append(self._label("Tasks") + tasks_summary(view))
            rows.extend(" " * 18 + group for group in task_groups(view))
            rows.append(self._label("Invocations") + invocation_text(view))
            rows.append(self._label("Idle timeout") + idle_text(view))
            rows.append(self._label("Max lifetime") + lifetime_text(view))
            if probe.session_id:
                rows.append(self._label("Session id") + probe.session_id)
        rows.append("")
        if view.stuck:
            rows.extend(self._stuck_banner(view, width))
        if view.ended is not None:
            rows.extend(self._wrap(view.ended.message, width, "red"))
        if self._history:
            rows.append(self._style("Events", bold=True))
            rows.extend(self._clip("  " + line, width) for line in self._history)
        rows.append("")
        rows.append(self._style("Ctrl-C to quit", dim=True))
        bell = BELL if view.stuck and "stuck" not in self._warned else ""
        if view.stuck:
            self._warned.add("stuck")
        else:
            self._warned.discard("stuck")
        # More rows than the terminal has would scroll it, and the next frame would not
        # start at the top: keep what fits, the status first.
        rows = rows[: max(1, height - 1)]
        frame = HOME + "".join(self._clip(row, width) + ERASE_LINE + "\n" for row in rows)
        self.out.write(frame + ERASE_BELOW + bell)
        self.out.flush()

    def close(self) -> None:
        self.out.write(SHOW_CURSOR)
        self.out.flush()

    def _label(self, text: str) -> str:
        return self._style(f"{text:<16}", bold=True)

    def _stuck_banner(self, view: View, width: int) -> list[str]:
        text = (
            f"!! STUCK? HealthyBusy with no task progress for "
            f"{fmt_duration(view.busy_unchanged_for or 0)} (threshold "
            f"{fmt_duration(view.settings.stuck_after)}). The managed runtime would keep this "
            f"session, and bill it, until its maximum lifetime: {lifetime_text(view)}. "
            "Look for a task that is never completed (complete_async_task belongs in a finally)."
        )
        return self._wrap(text, width, "red")

    def _wrap(self, text: str, width: int, color: str) -> list[str]:
        lines = textwrap.wrap(text, max(20, width - 2))
        return [
            self._style(line, fg=color, bold=True, reverse=index == 0)
            for index, line in enumerate(lines)
        ]

    def _clip(self, row: str, width: int) -> str:
        return _clip(row, width)


def display_for(out: IO[str]) -> LineDisplay | ScreenDisplay:
    """A live screen on a terminal, lines elsewhere."""
    return ScreenDisplay(out) if out.isatty() else LineDisplay(out)


def session_lines(summary: SessionSummary) -> list[str]:
    """One session of the emulator: its id, pid, status and cold start; then its two
    timers; then its tasks, each on a line of its own so that a terminal's width
    cuts none of them."""
    view = summary.view
    head = f"{summary.id}  pid {summary.pid or '-'}  "
    if summary.state is not SessionState.RUNNING or view is None:
        return [head + summary.state.value]
    first = head + status_text(view)
    if summary.cold_start is not None:
        first += f", cold start {summary.cold_start:.2f} s"
    lines = [first]
    if view.stuck:
        stuck = fmt_duration(view.busy_unchanged_for or 0)
        lines.append(f"    STUCK? no task progress for {stuck}")
    lines.append(f"    idle {idle_text(view)}; lifetime {lifetime_text(view)}")
    groups = task_groups(view)
    tasks = tasks_summary(view) + (f" ({', '.join(groups)})" if groups else "")
    in_flight = f"; {summary.in_flight} invocation(s) in flight" if summary.in_flight else ""
    lines.append(f"    tasks {tasks}{in_flight}")
    return lines


class SessionsScreen:
    """The emulator's sessions redrawn in place, with the latest events below them."""

    def __init__(self, out: IO[str], title: str) -> None:
        self.out = out
        self.title = title
        self.color = not os.environ.get("NO_COLOR")
        self._history: list[str] = []

    def start(self) -> None:
        self.out.write(HIDE_CURSOR + CLEAR)
        self.out.flush()

    def event(self, record: dict[str, object]) -> None:
        self._history.append(f"{clock(time.time())}  {record['message']}")
        del self._history[:-8]

    def draw(self, sessions: list[SessionSummary]) -> None:
        width, height = shutil.get_terminal_size((120, 30))
        now = time.time()
        rows = [
            click.style(self.title, bold=True) if self.color else self.title,
            f"{clock(now)}   {len(sessions)} session(s)",
            "",
        ]
        for summary in sessions:
            lines = session_lines(summary)
            if self.color and summary.view is not None and summary.view.stuck:
                lines = [click.style(line, fg="red", bold=True) for line in lines]
            rows.extend(lines)
        if not sessions:
            rows.append("(none yet: each runtimeSessionId's first invocation starts one)")
        rows += ["", "Events"] + ["  " + line for line in self._history]
        rows += ["", "Ctrl-C ends every session and quits"]
        rows = rows[: max(1, height - 1)]
        frame = HOME + "".join(_clip(row, width) + ERASE_LINE + "\n" for row in rows)
        self.out.write(frame + ERASE_BELOW)
        self.out.flush()

    def close(self) -> None:
        self.out.write(SHOW_CURSOR)
        self.out.flush()


def _clip(row: str, width: int) -> str:
    visible = click.unstyle(row)
    return row if len(visible) <= width - 1 else visible[: width - 2] + "…"
