"""``@async_task``: keep the agent busy while a function runs.

The wrapper has the same kind as the function it wraps (plain, coroutine,
generator, async generator), registers a task when the body starts and
completes it in a ``finally``: on return, exception, cancellation, or, for
generators, exhaustion or early close.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .callables import Kind, kind_of

if TYPE_CHECKING:
    from .executor import BackgroundExecutor
    from .registry import TaskRegistry


def track(
    registry: TaskRegistry,
    executor: BackgroundExecutor,
    func: Callable[..., Any],
    name: str,
    metadata: dict[str, Any] | None,
    max_duration: float | None,
) -> Callable[..., Any]:
    """Wrap ``func`` so that each call is a task in ``registry``; ``.start`` submits it
    to ``executor``."""
    add = registry.add
    complete = registry.complete
    kind = kind_of(func)

    if kind is Kind.COROUTINE:

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            task_id = add(name, metadata, max_duration=max_duration)
            try:
                return await func(*args, **kwargs)
            finally:
                complete(task_id)

    elif kind is Kind.GENERATOR:

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            task_id = add(name, metadata, max_duration=max_duration)
            try:
                return (yield from func(*args, **kwargs))
            finally:
                complete(task_id)

    elif kind is Kind.ASYNC_GENERATOR:

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            task_id = add(name, metadata, max_duration=max_duration)
            agen = func(*args, **kwargs)
            try:
                # What `yield from` does for generators, by hand: values sent and
                # exceptions thrown into the wrapper reach the wrapped generator.
                sent = None
                while True:
                    try:
                        item = await agen.asend(sent)
                    except StopAsyncIteration:
                        return
                    while True:
                        try:
                            sent = yield item
                            break
                        except GeneratorExit:
                            raise
                        except BaseException as exc:
                            try:
                                item = await agen.athrow(exc)
                            except StopAsyncIteration:
                                return
            finally:
                try:
                    await agen.aclose()
                finally:
                    complete(task_id)

    else:

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            task_id = add(name, metadata, max_duration=max_duration)
            try:
                return func(*args, **kwargs)
            finally:
                complete(task_id)

    wrapper.start = functools.partial(  # type: ignore[attr-defined]
        executor.submit_later, func, kind, name, metadata, max_duration
    )
    return wrapper
