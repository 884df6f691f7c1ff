"""In-process microbenchmarks, one runtime per process (figures 4 and 5).

Run by the harness as ``python -m benchlib.micro FIGURE RUNTIME ...``. Logging is
configured as an application would by default: ``logging.basicConfig`` to a file
at INFO, before the app is constructed. The result is written as JSON to --result.
"""

import argparse
import asyncio
import json
import logging
import threading
import time
from time import perf_counter

BATCH = 50  # add/complete pairs between two looks at the clock


def make_app(runtime):
    if runtime == "ours":
        from agentcore_sync import BedrockAgentCoreApp
    else:
        from bedrock_agentcore.runtime import BedrockAgentCoreApp
    return BedrockAgentCoreApp()


# Figure 4: task registry throughput.


def pairs_per_second(app, threads, seconds):
    """add_async_task + complete_async_task pairs/s, summed over `threads` threads."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]

    def work(slot):
        barrier.wait()
        done, stop_at = 0, deadline[0]
        while perf_counter() < stop_at:
            for _ in range(BATCH):
                app.complete_async_task(app.add_async_task("bench-pair"))
            done += BATCH
        counts[slot] = done

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    started = perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for worker in workers:
        worker.join()
    return sum(counts) / (perf_counter() - started)


def registry(app, seconds, repeats):
    pairs_per_second(app, 1, seconds / 4)  # warm-up
    return {
        "pairs_1": pairs_per_second(app, 1, seconds),
        "pairs_8": pairs_per_second(app, 8, seconds),
    }


# Figure 5: @async_task call overhead.


def _calls_per_repeat(time_calls, seconds):
    """How many calls make one repeat last about `seconds`."""
    calls = 10
    while True:
        elapsed = time_calls(calls)
        if elapsed >= seconds / 10 or calls >= 10_000_000:
            return max(10, int(calls * seconds / max(elapsed, 1e-9)))
        calls *= 10


def _best_overhead(time_bare, time_wrapped, seconds, repeats):
    """Per-call time of wrapped minus bare, both the best of `repeats` interleaved runs."""
    per_repeat = seconds / (2 * repeats)
    calls = _calls_per_repeat(time_wrapped, per_repeat)
    bare_calls = _calls_per_repeat(time_bare, per_repeat)
    bare, wrapped = [], []
    for _ in range(repeats):
        bare.append(time_bare(bare_calls) / bare_calls)
        wrapped.append(time_wrapped(calls) / calls)
    return max(0.0, min(wrapped) - min(bare))


def overhead_plain(app, seconds, repeats):
    def bare(value):
        return value

    def work(value):
        return value

    try:
        wrapped = app.async_task(work)
    except Exception as exc:
        return {"not_measured": f"@async_task rejects a plain function: {exc!r}"}

    def timer(func):
        def time_calls(calls):
            started = perf_counter()
            for _ in range(calls):
                func(1)
            return perf_counter() - started

        return time_calls

    return _best_overhead(timer(bare), timer(wrapped), seconds, repeats) * 1e6


def overhead_coroutine(app, seconds, repeats):
    async def bare(value):
        return value

    async def work(value):
        return value

    wrapped = app.async_task(work)

    # Each timed batch of awaits runs to completion on one private event loop.
    loop = asyncio.new_event_loop()
    try:

        def timer(func):
            async def timed(calls):
                started = perf_counter()
                for _ in range(calls):
                    await func(1)
                return perf_counter() - started

            return lambda calls: loop.run_until_complete(timed(calls))

        return _best_overhead(timer(bare), timer(wrapped), seconds, repeats) * 1e6
    finally:
        loop.close()


def overhead(app, seconds, repeats):
    plain = overhead_plain(app, seconds / 2, repeats)
    result = {"coroutine_us": overhead_coroutine(app, seconds / 2, repeats)}
    if isinstance(plain, dict):
        result["plain_not_measured"] = plain["not_measured"]
    else:
        result["plain_us"] = plain
    return result


FIGURES = {"registry": registry, "overhead": overhead}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument("runtime", choices=["ours", "sdk"])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--log", required=True, help="the log file of basicConfig")
    parser.add_argument("--result", required=True, help="where to write the JSON result")
    args = parser.parse_args()
    logging.basicConfig(filename=args.log, level=logging.INFO)
    app = make_app(args.runtime)
    started = time.monotonic()
    result = FIGURES[args.figure](app, args.seconds, args.repeats)
    result["wall_seconds"] = time.monotonic() - started
    with open(args.result, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
