"""The core's ping status without a web framework: who asks the custom ``@ping``
function, and invocation slots given back from finalizers."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest

from agentcore_sync.core.admission import InvocationLimiter
from agentcore_sync.core.ping import PingTracker
from agentcore_sync.core.registry import TaskRegistry
from agentcore_sync.core.runtime import Runtime
from agentcore_sync.models import PingStatus

pytestmark = pytest.mark.unit

HEALTHY, BUSY = PingStatus.HEALTHY, PingStatus.HEALTHY_BUSY
STATUS_VALUES = {status.value for status in PingStatus}


class CountingPing:
    """A custom ping function that answers ``answer`` and counts its calls."""

    def __init__(self, answer: PingStatus | str = HEALTHY, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> PingStatus | str:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    runtime = Runtime(result_store="memory://")
    yield runtime
    runtime.shutdown(grace=5)


def new_tracker(limit: int | None = None) -> tuple[PingTracker, TaskRegistry, InvocationLimiter]:
    registry = TaskRegistry()
    limiter = InvocationLimiter(limit)
    return PingTracker((registry.busy, limiter.busy)), registry, limiter


# -- the custom function runs for /ping and get_current_ping_status() only ---------------


def test_a_slow_custom_ping_is_not_asked_when_coroutine_tasks_end(runtime: Runtime) -> None:
    custom = CountingPing(delay=0.3)
    runtime.ping(custom)

    @runtime.async_task
    async def trivial(number: int) -> int:
        return number

    handles = [trivial.start(number) for number in range(10)]
    assert [handle.result(timeout=10) for handle in handles] == list(range(10))

    assert custom.calls == 0
    for handle in handles:
        record = runtime.get_task_result(handle.task_id)
        assert record is not None
        assert record["status"] == "succeeded"
        assert record["ping_status_after"] in STATUS_VALUES

    assert runtime.get_current_ping_status() is HEALTHY
    assert custom.calls == 1


def test_thread_tasks_and_cancellations_do_not_ask_the_custom_function() -> None:
    runtime = Runtime(result_store="memory://", task_threads=1)
    try:
        custom = CountingPing(BUSY)
        runtime.ping(custom)
        release = threading.Event()
        blocker = runtime.submit(release.wait, 10)  # holds the only pool thread
        handles = [runtime.submit(sum, [number, 1]) for number in range(5)]
        queued = runtime.submit(sum, [0])
        assert queued.cancel()
        release.set()
        assert blocker.result(timeout=10) is True
        assert [handle.result(timeout=10) for handle in handles] == [1, 2, 3, 4, 5]
        record = runtime.get_task_result(queued.task_id)
        assert record is not None
        assert record["status"] == "cancelled"
        assert record["ping_status_after"] in STATUS_VALUES
        assert custom.calls == 0
        assert runtime.get_current_ping_status() is BUSY
        assert custom.calls == 1
    finally:
        runtime.shutdown(grace=5)


def test_clearing_a_forced_status_does_not_ask_the_custom_function(runtime: Runtime) -> None:
    custom = CountingPing(BUSY)
    runtime.ping(custom)
    runtime.force_ping_status(HEALTHY)
    runtime.clear_forced_ping_status()
    assert custom.calls == 0
    assert runtime.get_current_ping_status() is BUSY
    assert custom.calls == 1


def test_without_asking_the_status_is_forced_then_the_last_answer_then_automatic() -> None:
    tracker, registry, _limiter = new_tracker()
    registry.add("work")
    custom = CountingPing(HEALTHY)
    tracker.custom = custom
    # Not asked yet: the automatic status.
    assert tracker.current_without_custom() is BUSY
    assert tracker.current() is HEALTHY
    assert custom.calls == 1
    # Its last answer holds until a ping asks again.
    assert tracker.current_without_custom() is HEALTHY
    tracker.force(BUSY)
    assert tracker.current_without_custom() is BUSY
    tracker.force(None)
    assert tracker.current_without_custom() is HEALTHY
    assert custom.calls == 1
    # Once it fails, the automatic status stands for it.
    custom.answer = RuntimeError("down")
    assert tracker.current() is BUSY
    assert tracker.current_without_custom() is BUSY
    # Another function's answers are not this one's.
    custom.answer = HEALTHY
    assert tracker.current() is HEALTHY
    tracker.custom = CountingPing(HEALTHY)
    assert tracker.current_without_custom() is BUSY
    assert custom.calls == 3


def test_the_snapshot_for_ping_asks_the_custom_function() -> None:
    tracker, _registry, _limiter = new_tracker()
    custom = CountingPing(BUSY)
    tracker.custom = custom
    status, _changed_at = tracker.snapshot()
    assert status is BUSY
    assert custom.calls == 1


# -- slots given back from finalizers ---------------------------------------------------


def test_release_soon_returns_while_its_own_thread_holds_the_lock() -> None:
    limiter = InvocationLimiter(1)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    with limiter._lock:
        limiter.release_soon()  # release() here would wait for this very thread
    assert limiter.try_acquire()
    assert limiter.saturated
    assert limiter.in_flight == 1


def test_a_finalizer_run_by_a_collection_under_the_lock_gives_the_slot_back() -> None:
    limiter = InvocationLimiter(1)

    class Holder:
        """Holds a slot, in a reference cycle: only the collector frees it."""

        def __init__(self) -> None:
            self.cycle = self

        def __del__(self) -> None:
            limiter.release_soon()

    assert limiter.try_acquire()
    Holder()
    with limiter._lock:
        gc.collect()
    assert limiter.in_flight == 0
    assert not limiter.saturated
    assert limiter.try_acquire()


def test_each_release_soon_gives_back_one_slot() -> None:
    limiter = InvocationLimiter(3)
    for _ in range(3):
        assert limiter.try_acquire()
    limiter.release_soon()
    limiter.release_soon()
    assert limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0
    for _ in range(3):
        assert limiter.try_acquire()
    assert not limiter.try_acquire()


def test_a_ping_applies_a_release_handed_over_by_a_finalizer() -> None:
    tracker, _registry, limiter = new_tracker(limit=1)
    assert limiter.try_acquire()
    assert tracker.current() is BUSY
    limiter.release_soon()
    # No invocation comes; the ping itself sees the slot freed.
    assert tracker.current() is HEALTHY
    assert limiter._in_flight == 0


def test_a_slot_released_from_another_thread_while_the_lock_is_held() -> None:
    limiter = InvocationLimiter(2)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    with limiter._lock:
        thread = threading.Thread(target=limiter.release_soon)
        thread.start()
        thread.join(5)
        assert not thread.is_alive()  # it did not wait for the lock
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
