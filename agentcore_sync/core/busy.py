"""A busy flag that keeps its flips until the ping status reads them.

The task registry goes from empty to non-empty and back, and the invocation
limiter in and out of saturation, far more often than anyone asks ``/ping``:
a task that starts and ends flips the flag twice. A flip must cost the
flipping thread next to nothing, so it is only noted, in constant memory; the
ping tracker takes the flips later (on the next ping, or from its log thread
a few milliseconds after), decides which of them changed the status, and
logs those.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

#: Flips kept whole between two takes; past that only the latest is, and the count.
KEPT = 8

#: One flip: (busy, wall-clock time, detail, the flipping thread's context, for
#: the requestId and sessionId of its log line).
Flip = tuple[bool, float, str, contextvars.Context]


class BusyFlag:
    """Whether one source keeps the agent busy, and its flips since the last take.

    The source calls ``flip`` with its own lock held, and hands that lock to
    the flag, so that flips are noted in the order they happen and ``take``
    gets them whole. Lock order: the ping tracker's lock, then the source's
    (``take``); the source's, then whatever ``on_flip`` takes (the ping log's).
    """

    __slots__ = (
        "_causes",
        "_count",
        "_flips",
        "_last",
        "_lock",
        "busy",
        "on_flip",
        "settle",
        "while_busy",
    )

    def __init__(
        self, lock: threading.Lock, became_busy: str, became_idle: str, while_busy: str
    ) -> None:
        self.busy = False
        #: Why the status is busy while this flag is, as logged.
        self.while_busy = while_busy
        #: Called by the flipping thread, under the lock, at the first flip since a take.
        self.on_flip: Callable[[], None] | None = None
        #: Called by the ping tracker, with no lock held, before it takes the flips:
        #: lets the source apply changes it had to defer (releases from finalizers).
        self.settle: Callable[[], None] | None = None
        # Causes of flips, formatted with their detail only when logged.
        self._causes = (became_idle, became_busy)
        # _lock (the source's) guards _count, _flips and _last. Invariant: _count
        # flips were noted since the last take; the first min(_count, KEPT) are
        # in _flips, and _last is the latest of those past KEPT, if any.
        self._lock = lock
        self._count = 0
        self._flips: list[Flip] = []
        self._last: Flip | None = None

    def flip(self, busy: bool, at: float, detail: str = "") -> None:
        """Note that the flag became ``busy`` at ``at`` (no-op if it already was)."""
        if busy is self.busy:
            return
        self.busy = busy
        count = self._count = self._count + 1
        if count > KEPT:
            self._last = (busy, at, detail, contextvars.copy_context())
            return
        self._flips.append((busy, at, detail, contextvars.copy_context()))
        if count == 1 and self.on_flip is not None:
            self.on_flip()

    @property
    def flipped(self) -> bool:
        """Whether there may be flips to take (read without the lock: a hint)."""
        return self._count > 0

    def take(self) -> tuple[list[Flip], int]:
        """The flips since the last take, oldest first, and how many there were.

        Past the first ``KEPT``, only the latest flip is returned: the count says
        how many flips the list stands for.
        """
        with self._lock:
            flips, count, last = self._flips, self._count, self._last
            self._flips, self._count, self._last = [], 0, None
        if last is not None:
            flips.append(last)
        return flips, count

    def cause(self, flip: Flip) -> str:
        """Why the status changed at this flip, as logged."""
        return self._causes[flip[0]].format(flip[2])
