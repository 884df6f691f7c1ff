"""The ping status: priority forced > custom > automatic, fallbacks, time_of_last_update."""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from agentcore_sync import BedrockAgentCoreApp, PingStatus
from agentcore_sync.core.busy import BusyFlag
from agentcore_sync.core.ping import PingTracker, _change_log

pytestmark = pytest.mark.unit

HEALTHY, BUSY = PingStatus.HEALTHY, PingStatus.HEALTHY_BUSY


def new_app() -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(configure_logging=False)


def http_status(app: BedrockAgentCoreApp) -> dict[str, Any]:
    reply = app.test_client().get("/ping")
    assert reply.status_code == 200
    return reply.json


def ping_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- priority ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forced", "custom", "tasks"),
    list(itertools.product([None, HEALTHY, BUSY], [None, HEALTHY, BUSY], [0, 1])),
)
def test_priority_forced_then_custom_then_automatic(
    forced: PingStatus | None, custom: PingStatus | None, tasks: int
) -> None:
    app = new_app()
    if custom is not None:
        app.ping(lambda: custom)
    if forced is not None:
        app.force_ping_status(forced)
    for n in range(tasks):
        app.add_async_task(f"task-{n}")
    automatic = BUSY if tasks else HEALTHY
    expected = forced or custom or automatic
    assert app.get_current_ping_status() is expected
    assert http_status(app)["status"] == expected.value


def test_clearing_the_forced_status_restores_the_next_level() -> None:
    app = new_app()
    app.force_ping_status(BUSY)
    assert app.get_current_ping_status() is BUSY
    app.clear_forced_ping_status()
    assert app.get_current_ping_status() is HEALTHY
    app.clear_forced_ping_status()  # clearing twice is harmless
    app.force_ping_status("HealthyBusy")  # the string value works too
    assert app.get_current_ping_status() is BUSY


def test_custom_function_may_return_the_string_value() -> None:
    app = new_app()
    app.ping(lambda: "HealthyBusy")
    status = app.get_current_ping_status()
    assert status is BUSY and isinstance(status, PingStatus)
    assert http_status(app)["status"] == "HealthyBusy"


def test_custom_function_from_the_seed_reading_active_tasks() -> None:
    app = new_app()
    busy_dependency = {"value": False}

    @app.ping
    def custom_ping_status():
        if busy_dependency["value"]:
            return PingStatus.HEALTHY_BUSY
        return PingStatus.HEALTHY_BUSY if app._active_tasks else PingStatus.HEALTHY

    assert app.get_current_ping_status() is HEALTHY
    task_id = app.add_async_task("work")
    assert app.get_current_ping_status() is BUSY
    app.complete_async_task(task_id)
    assert app.get_current_ping_status() is HEALTHY
    busy_dependency["value"] = True
    assert http_status(app)["status"] == "HealthyBusy"


# -- fallbacks -----------------------------------------------------------------


@pytest.mark.parametrize("tasks", [0, 1])
def test_custom_function_raising_falls_back_to_automatic_with_a_warning(
    tasks: int, caplog: pytest.LogCaptureFixture
) -> None:
    app = new_app()

    @app.ping
    def broken():
        raise ConnectionError("database unreachable")

    for n in range(tasks):
        app.add_async_task(f"t{n}")
    caplog.set_level(logging.INFO)
    expected = BUSY if tasks else HEALTHY
    assert app.get_current_ping_status() is expected
    assert any("database unreachable" in message for message in ping_warnings(caplog))
    assert http_status(app)["status"] == expected.value


@pytest.mark.parametrize("invalid", ["some_status", "healthy", "", None, 42, object()])
def test_custom_function_returning_an_invalid_value_falls_back_with_a_warning(
    invalid: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = new_app()
    app.ping(lambda: invalid)
    caplog.set_level(logging.INFO)
    assert app.get_current_ping_status() is HEALTHY
    assert ping_warnings(caplog)
    app.add_async_task("t")
    assert app.get_current_ping_status() is BUSY
    assert http_status(app)["status"] == "HealthyBusy"


def test_custom_function_calling_get_current_ping_status_gets_automatic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The seed's pitfall: no recursion, the automatic status, one warning."""
    app = new_app()
    calls = []

    @app.ping
    def bad_example():
        calls.append(1)
        return app.get_current_ping_status()

    caplog.set_level(logging.INFO)
    assert app.get_current_ping_status() is HEALTHY
    task_id = app.add_async_task("t")
    assert app.get_current_ping_status() is BUSY
    assert http_status(app)["status"] == "HealthyBusy"
    for _ in range(20):
        app.get_current_ping_status()
    app.complete_async_task(task_id)
    assert http_status(app)["status"] == "Healthy"
    # The custom function ran once per outer call, never recursively.
    assert 20 < len(calls) < 40
    recursion_warnings = [m for m in ping_warnings(caplog) if "get_current_ping_status" in m]
    assert len(recursion_warnings) == 1, ping_warnings(caplog)


def test_recursion_guard_is_per_thread() -> None:
    """Threads computing the status at once all get the custom answer, not the fallback."""
    app = new_app()

    @app.ping
    def custom():
        time.sleep(0.05)
        return BUSY

    results: list[PingStatus] = []
    threads = [
        threading.Thread(target=lambda: results.append(app.get_current_ping_status()))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [BUSY, BUSY, BUSY]


# -- time_of_last_update -------------------------------------------------------


def next_second() -> None:
    """Sleep into the next whole unix second."""
    now = time.time()
    time.sleep(math.ceil(now) - now + 0.02)


def bracket(action: Any) -> tuple[int, int]:
    before = time.time()
    action()
    after = time.time()
    return int(before), int(after)


def test_time_of_last_update_changes_exactly_when_the_status_changes() -> None:
    app = new_app()

    # A change made by the registry, with nobody pinging.
    first = {}
    became_busy = bracket(lambda: first.setdefault("id", app.add_async_task("one")))
    next_second()
    body = http_status(app)
    assert body["status"] == "HealthyBusy"
    assert became_busy[0] <= body["time_of_last_update"] <= became_busy[1]
    assert body["time_of_last_update"] < int(time.time())  # not the time of this ping

    # Registry activity that leaves the status as it is changes nothing.
    second = app.add_async_task("two")
    app.complete_async_task(first["id"])
    assert http_status(app)["time_of_last_update"] == body["time_of_last_update"]

    # Busy, healthy, busy, healthy again without a ping in between: the last change counts.
    def blip() -> None:
        app.complete_async_task(second)
        app.complete_async_task(app.add_async_task("blip"))

    became_healthy = bracket(blip)
    next_second()
    body = http_status(app)
    assert body["status"] == "Healthy"
    assert became_healthy[0] <= body["time_of_last_update"] <= became_healthy[1]

    # Pings, a repeated force to the current value and clearing change nothing...
    next_second()
    app.force_ping_status(HEALTHY)
    app.clear_forced_ping_status()
    for _ in range(3):
        assert http_status(app)["time_of_last_update"] == body["time_of_last_update"]

    # ...forcing another value does.
    forced = bracket(lambda: app.force_ping_status(BUSY))
    body = http_status(app)
    assert body["status"] == "HealthyBusy"
    assert forced[0] <= body["time_of_last_update"] <= forced[1]


def test_time_of_last_update_is_an_int_of_unix_seconds() -> None:
    app = new_app()
    before = int(time.time())
    body = http_status(app)
    assert type(body["time_of_last_update"]) is int
    assert before - 1 <= body["time_of_last_update"] <= int(time.time())


# -- flips recorded where they happen, replayed by the tracker -----------------


@pytest.fixture
def change_log(caplog: pytest.LogCaptureFixture) -> Callable[[int], int]:
    """Counts status changes logged by this test (a counted line stands for its count)."""
    _change_log.flush()  # changes of earlier tests are not this one's
    caplog.set_level(logging.INFO, logger="agentcore_sync.ping")
    caplog.clear()
    pattern = re.compile(r"Ping status changed (\d+) times")

    def total() -> int:
        count = 0
        for record in caplog.records:
            message = record.getMessage()
            if message.startswith("Ping status changed"):
                match = pattern.match(message)
                count += int(match.group(1)) if match else 1
        return count

    def logged(expected: int) -> int:
        deadline = time.monotonic() + 5
        while total() < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # and no more than that
        return total()

    return logged


def test_a_burst_of_tasks_is_logged_in_few_lines_counting_every_change(
    change_log: Callable[[int], int], caplog: pytest.LogCaptureFixture
) -> None:
    app = new_app()
    pairs = 5_000
    for _ in range(pairs):
        app.complete_async_task(app.add_async_task("tiny"))
    finished_by = time.time()
    assert app.get_current_ping_status() is HEALTHY
    assert change_log(2 * pairs) == 2 * pairs
    lines = [r for r in caplog.records if r.getMessage().startswith("Ping status changed")]
    assert len(lines) < pairs / 10, "bursts are counted, not written line by line"
    assert "task 'tiny' finished" in lines[-1].getMessage()
    # time_of_last_update is the time of the last change, not of the ping.
    status, changed_at = app.runtime.ping_status.snapshot()
    assert status is HEALTHY and finished_by - 1 < changed_at <= finished_by


def tracker_with_two_flags() -> tuple[PingTracker, BusyFlag, BusyFlag]:
    tasks = BusyFlag(threading.Lock(), "task {!r} started", "task {!r} finished", "active")
    invocations = BusyFlag(threading.Lock(), "saturated", "slot freed", "saturated")
    return PingTracker((tasks, invocations)), tasks, invocations


def test_flips_are_replayed_in_order_and_only_real_changes_recorded(
    change_log: Callable[[int], int], caplog: pytest.LogCaptureFixture
) -> None:
    tracker, tasks, invocations = tracker_with_two_flags()
    invocations.flip(True, 1000.0)
    tasks.flip(True, 1001.0, "a")  # already busy: saturated
    tasks.flip(False, 1002.0, "a")
    invocations.flip(False, 1003.0)
    tasks.flip(True, 1004.0, "b")
    assert tracker.snapshot() == (BUSY, 1004.0)
    assert change_log(3) == 3
    messages = [r.getMessage() for r in caplog.records if "Ping status" in r.getMessage()]
    assert messages == [
        "Ping status changed: Healthy -> HealthyBusy (saturated)",
        "Ping status changed: HealthyBusy -> Healthy (slot freed)",
        "Ping status changed: Healthy -> HealthyBusy (task 'b' started)",
    ]
    assert [r.created for r in caplog.records if "Ping status" in r.getMessage()] == [
        1000.0,
        1003.0,
        1004.0,
    ]


def test_flips_under_a_forced_status_change_nothing() -> None:
    tracker, tasks, _ = tracker_with_two_flags()
    tracker.forced = BUSY
    tracker.current(cause="forced")
    forced_at = tracker.snapshot()[1]
    tasks.flip(True, forced_at + 1, "a")
    tasks.flip(False, forced_at + 2, "a")
    assert tracker.snapshot() == (BUSY, forced_at)
    tracker.forced = None
    assert tracker.current() is HEALTHY


def test_flips_past_those_kept_are_counted(change_log: Callable[[int], int]) -> None:
    flag = BusyFlag(threading.Lock(), "on", "off", "on")
    for second in range(25):
        flag.flip(second % 2 == 0, 2000.0 + second)
    flips, count = flag.take()
    assert count == 25
    assert [flip[1] for flip in flips] == [2000.0 + second for second in (*range(8), 24)]
    assert flag.take() == ([], 0)

    tracker, tasks, invocations = tracker_with_two_flags()
    for second in range(25):
        tasks.flip(second % 2 == 0, 2000.0 + second, str(second))
    assert tracker.snapshot() == (BUSY, 2024.0)
    assert change_log(25) == 25

    # Two flags at once are replayed flip by flip.
    invocations.flip(True, 2100.0)
    for second in range(101, 121):
        tasks.flip(second % 2 == 1, 2000.0 + second, str(second))
    invocations.flip(False, 2200.0)
    assert tracker.snapshot() == (HEALTHY, 2200.0)
    assert change_log(26) == 26, "task flips while saturated changed nothing"
    invocations.flip(True, 2300.0)
    invocations.flip(False, 2301.0)
    for second in range(20):
        tasks.flip(second % 2 == 0, 2302.0 + second, str(second))
    assert tracker.snapshot() == (HEALTHY, 2321.0)
    assert change_log(26 + 22) == 26 + 22, "flips not kept are counted when they counted"


def test_a_flip_is_a_no_op_when_the_flag_already_has_that_value() -> None:
    flag = BusyFlag(threading.Lock(), "on", "off", "on")
    flag.flip(False, 1.0)
    flag.flip(True, 2.0)
    flag.flip(True, 3.0)
    flips, count = flag.take()
    assert [(flip[0], flip[1]) for flip in flips] == [(True, 2.0)] and count == 1
