"""Keep-alive load with wrk, bounded by its duration (figures 1, 2, 7, 8)."""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from .config import INVOKE_LUA

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


class WrkError(RuntimeError):
    """wrk failed or printed nothing we can read."""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int

    @property
    def ok_per_second(self) -> float:
        """Successful (2xx/3xx) responses per second."""
        return (self.requests - self.non_2xx) / self.seconds


def parse(output: str) -> WrkResult:
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", output)
    if not total:
        raise WrkError(f"unreadable wrk output: {output.strip()[-300:]}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS[total.group(3)],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


@cache
def _pinned() -> list[str]:
    """``taskset`` to keep wrk on the last usable core, where there are two or more.

    Left to the scheduler, wrk and the server trade cores, and two runs of the
    same server differed by 10% at 40,000 requests/s; pinned, by 1-2%.
    """
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(usable[-1])]


def run(url: str, *, seconds: int, connections: int, post_json: bool = False) -> WrkResult:
    """One wrk run: one thread on a core of its own (the others are the server's),
    keep-alive connections."""
    command = [*_pinned(), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    if post_json:
        command += ["-s", str(INVOKE_LUA)]
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    result = parse(done.stdout)
    if result.requests == 0 or result.requests == result.non_2xx:
        raise WrkError(f"no successful response in {result.requests} requests")
    return result
