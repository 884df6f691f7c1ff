"""``@async_task`` on the four kinds of callable.

Busy from the moment the call starts until it returns, raises, is cancelled, or
(generators) the iteration ends or is closed early; the wrapper keeps the
function's kind, name, docstring and signature.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agentcore_sync import BedrockAgentCoreApp, PingStatus

pytestmark = pytest.mark.unit

HEALTHY, BUSY = PingStatus.HEALTHY, PingStatus.HEALTHY_BUSY


@pytest.fixture
def app() -> BedrockAgentCoreApp:
    return BedrockAgentCoreApp(configure_logging=False)


def snapshot(app: BedrockAgentCoreApp) -> tuple[PingStatus, int]:
    return app.get_current_ping_status(), app.get_async_task_info()["active_count"]


IDLE = (HEALTHY, 0)
ONE = (BUSY, 1)


class Boom(Exception):
    pass


# -- wrapping ------------------------------------------------------------------


def test_the_wrapper_keeps_kind_name_docstring_and_signature(app: BedrockAgentCoreApp) -> None:
    async def coroutine_fn(a: int, b: str = "x", *args: Any, key: float = 1.0, **kw: Any) -> int:
        """A coroutine function."""
        return a

    def plain_fn(a: int, b: str = "x", *, key: float = 1.0) -> str:
        """A plain function."""
        return b

    def generator_fn(n: int, step: int = 1) -> Iterator[int]:
        """A generator function."""
        yield from range(0, n, step)

    async def async_generator_fn(n: int, *, label: str = "") -> AsyncIterator[int]:
        """An async generator function."""
        for i in range(n):
            yield i

    kinds = {
        coroutine_fn: inspect.iscoroutinefunction,
        plain_fn: lambda f: (
            not (
                inspect.iscoroutinefunction(f)
                or inspect.isgeneratorfunction(f)
                or inspect.isasyncgenfunction(f)
            )
        ),
        generator_fn: inspect.isgeneratorfunction,
        async_generator_fn: inspect.isasyncgenfunction,
    }
    for func, is_kind in kinds.items():
        for wrapped in (app.async_task(func), app.async_task(name="n", metadata={"m": 1})(func)):
            assert is_kind(wrapped), func.__name__
            assert wrapped.__name__ == func.__name__
            assert wrapped.__qualname__ == func.__qualname__
            assert wrapped.__doc__ == func.__doc__
            assert wrapped.__wrapped__ is func
            assert inspect.signature(wrapped) == inspect.signature(func)
            assert callable(wrapped.start)


# -- coroutine functions -------------------------------------------------------


def test_coroutine_function_is_busy_while_it_runs(app: BedrockAgentCoreApp) -> None:
    seen = []

    @app.async_task
    async def work(x):
        seen.append(snapshot(app))
        await asyncio.sleep(0.01)
        seen.append(snapshot(app))
        return x * 2

    assert asyncio.run(work(21)) == 42
    assert seen == [ONE, ONE]
    assert snapshot(app) == IDLE


def test_coroutine_function_raising(app: BedrockAgentCoreApp) -> None:
    @app.async_task
    async def work():
        assert snapshot(app) == ONE
        await asyncio.sleep(0)
        raise Boom("failed")

    with pytest.raises(Boom):
        asyncio.run(work())
    assert snapshot(app) == IDLE


def test_coroutine_function_cancelled(app: BedrockAgentCoreApp) -> None:
    started = asyncio.Event

    @app.async_task
    async def work(ready):
        ready.set()
        await asyncio.sleep(60)

    async def main():
        ready = started()
        task = asyncio.create_task(work(ready))
        await ready.wait()
        assert snapshot(app) == ONE
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert snapshot(app) == IDLE


def test_concurrent_coroutines_each_count(app: BedrockAgentCoreApp) -> None:
    @app.async_task(name="worker", metadata={"pool": "a"})
    async def work(gate):
        await gate.wait()

    async def main():
        gate = asyncio.Event()
        tasks = [asyncio.create_task(work(gate)) for _ in range(3)]
        await asyncio.sleep(0.01)
        info = app.get_async_task_info()
        assert info["active_count"] == 3
        assert {job["name"] for job in info["running_jobs"]} == {"worker"}
        assert all(job["metadata"] == {"pool": "a"} for job in info["running_jobs"])
        gate.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert snapshot(app) == IDLE


# -- plain functions -----------------------------------------------------------


def test_plain_function_is_busy_while_it_runs(app: BedrockAgentCoreApp) -> None:
    seen = []

    @app.async_task
    def work(a, b=1):
        seen.append(snapshot(app))
        return a + b

    assert work(1, b=2) == 3
    assert seen == [ONE]
    assert snapshot(app) == IDLE
    assert not inspect.iscoroutinefunction(work)


def test_plain_function_raising(app: BedrockAgentCoreApp) -> None:
    @app.async_task
    def work():
        assert snapshot(app) == ONE
        raise Boom("failed")

    with pytest.raises(Boom):
        work()
    assert snapshot(app) == IDLE


def test_plain_function_in_threads(app: BedrockAgentCoreApp) -> None:
    gate = threading.Event()
    inside = threading.Barrier(5)

    @app.async_task
    def work():
        inside.wait(5)
        gate.wait(5)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    inside.wait(5)
    assert snapshot(app) == (BUSY, 4)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert snapshot(app) == IDLE


# -- generator functions -------------------------------------------------------


def test_generator_is_busy_until_exhausted(app: BedrockAgentCoreApp) -> None:
    seen = []

    @app.async_task
    def numbers(n):
        for i in range(n):
            seen.append(snapshot(app))
            yield i
        return "done"

    gen = numbers(3)
    assert next(gen) == 0
    assert snapshot(app) == ONE
    assert next(gen) == 1
    assert next(gen) == 2
    assert snapshot(app) == ONE
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"
    assert seen == [ONE, ONE, ONE]
    assert snapshot(app) == IDLE
    assert list(numbers(4)) == [0, 1, 2, 3]
    assert snapshot(app) == IDLE


def test_generator_closed_early(app: BedrockAgentCoreApp) -> None:
    cleaned = []

    @app.async_task
    def numbers():
        try:
            yield from range(100)
        finally:
            cleaned.append(True)

    gen = numbers()
    assert next(gen) == 0
    assert snapshot(app) == ONE
    gen.close()
    assert cleaned == [True]
    assert snapshot(app) == IDLE


def test_generator_raising_mid_way(app: BedrockAgentCoreApp) -> None:
    @app.async_task
    def numbers():
        yield 1
        raise Boom("mid-way")

    gen = numbers()
    assert next(gen) == 1
    with pytest.raises(Boom):
        next(gen)
    assert snapshot(app) == IDLE


def test_generator_thrown_into_and_sent_to(app: BedrockAgentCoreApp) -> None:
    @app.async_task
    def echo():
        received = yield "ready"
        while True:
            received = yield received

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("hello") == "hello"
    with pytest.raises(Boom):
        gen.throw(Boom("thrown"))
    assert snapshot(app) == IDLE


def test_generator_not_started_is_not_busy(app: BedrockAgentCoreApp) -> None:
    @app.async_task
    def numbers():
        yield 1

    gen = numbers()
    assert snapshot(app) == IDLE
    gen.close()
    assert snapshot(app) == IDLE


# -- async generator functions -------------------------------------------------


def test_async_generator_is_busy_until_exhausted(app: BedrockAgentCoreApp) -> None:
    seen = []

    @app.async_task
    async def numbers(n):
        for i in range(n):
            await asyncio.sleep(0)
            seen.append(snapshot(app))
            yield i

    async def main():
        agen = numbers(3)
        assert await agen.__anext__() == 0
        assert snapshot(app) == ONE
        rest = [item async for item in agen]
        assert rest == [1, 2]
        assert snapshot(app) == IDLE

    asyncio.run(main())
    assert seen == [ONE, ONE, ONE]
    assert snapshot(app) == IDLE


def test_async_generator_closed_early(app: BedrockAgentCoreApp) -> None:
    cleaned = []

    @app.async_task
    async def numbers():
        try:
            for i in range(100):
                yield i
        finally:
            cleaned.append(True)

    async def main():
        agen = numbers()
        assert await agen.__anext__() == 0
        assert snapshot(app) == ONE
        await agen.aclose()
        assert snapshot(app) == IDLE

    asyncio.run(main())
    assert cleaned == [True]


def test_async_generator_raising_mid_way(app: BedrockAgentCoreApp) -> None:
    @app.async_task
    async def numbers():
        yield 1
        raise Boom("mid-way")

    async def main():
        agen = numbers()
        assert await agen.__anext__() == 1
        with pytest.raises(Boom):
            await agen.__anext__()

    asyncio.run(main())
    assert snapshot(app) == IDLE


def test_async_generator_cancelled(app: BedrockAgentCoreApp) -> None:
    @app.async_task
    async def numbers(ready):
        yield 0
        ready.set()
        await asyncio.sleep(60)
        yield 1

    async def main():
        ready = asyncio.Event()

        async def consume():
            return [item async for item in numbers(ready)]

        task = asyncio.create_task(consume())
        await ready.wait()
        assert snapshot(app) == ONE
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert snapshot(app) == IDLE


# -- through the runtime -------------------------------------------------------


def test_tasks_called_by_a_coroutine_handler_on_the_runtime_loop(
    app: BedrockAgentCoreApp,
) -> None:
    @app.async_task
    def sync_step():
        return app.get_async_task_info()["active_count"]

    @app.async_task
    async def process(data_id):
        return {
            "data_id": data_id,
            "during": app.get_current_ping_status().value,
            "nested_active": await asyncio.to_thread(sync_step),
        }

    @app.entrypoint
    async def handler(payload):
        return await process(payload["id"])

    reply = app.test_client().post("/invocations", json={"id": "d1"})
    assert reply.json == {"data_id": "d1", "during": "HealthyBusy", "nested_active": 2}
    assert snapshot(app) == IDLE


def test_method_decorated_with_async_task(app: BedrockAgentCoreApp) -> None:
    class Service:
        factor = 3

        @app.async_task
        def compute(self, x):
            assert snapshot(app) == ONE
            return x * self.factor

    assert Service().compute(2) == 6
    assert snapshot(app) == IDLE


def test_async_generator_task_forwards_asend_and_athrow():
    import asyncio

    from agentcore_sync import BedrockAgentCoreApp

    app = BedrockAgentCoreApp(result_store="memory://")

    @app.async_task
    async def echo():
        received = []
        while True:
            try:
                value = yield len(received)
            except KeyError:
                value = "thrown"
            received.append(value)
            if value == "stop":
                return

    async def drive():
        agen = echo()
        assert await agen.asend(None) == 0
        assert app.get_async_task_info()["active_count"] == 1
        assert await agen.asend("hello") == 1
        assert await agen.athrow(KeyError()) == 2
        with pytest.raises(StopAsyncIteration):
            await agen.asend("stop")
        return app.get_async_task_info()["active_count"]

    assert asyncio.run(drive()) == 0
