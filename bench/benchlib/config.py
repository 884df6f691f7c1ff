"""How long and how often each figure is measured, in full and quick mode."""

from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
APPS_DIR = BENCH_DIR / "apps"
VENV_DIR = BENCH_DIR / ".venv"
WORK_DIR = BENCH_DIR / ".work"
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
INVOKE_LUA = Path(__file__).resolve().parent / "invoke.lua"

# Echo payload sent by the Python warm-up; wrk sends the one in invoke.lua.
ECHO_PAYLOAD = {"prompt": "Hello, agent!", "session": "bench", "turn": 1}


@dataclass(frozen=True)
class Settings:
    quick: bool
    rounds: int  # A B A B: every peer measured once per round, the median reported
    wrk_seconds: int  # one load run (figures 1, 2, 7, 8)
    wrk_warmup_seconds: int  # an unmeasured load run before it (0: a few requests only)
    connections: int  # wrk keep-alive connections
    long_seconds: float  # duration of the long invocations (figure 3)
    ping_interval: float  # gap between /ping probes (figures 3, 6)
    tasks: int  # background tasks (figures 6, 7)
    tasks_window: float  # /ping probing while the tasks start (figure 6)
    micro_seconds: float  # one in-process measurement (figures 4, 5)
    micro_repeats: int  # timeit-style repeats, the best kept (figure 5)
    waitress_threads: int = 8  # waitress thread count, the same for every peer on it
    idle_seconds: float = 30.0  # the idle window of figure 9, a /ping every 2 s in it


FULL = Settings(
    quick=False,
    # On a shared 2-core machine about one round in four meets a burst of other
    # load; the median of five leaves it out where that of three may not.
    rounds=5,
    wrk_seconds=10,
    wrk_warmup_seconds=2,
    connections=16,
    long_seconds=6.0,
    ping_interval=0.02,
    tasks=10_000,
    tasks_window=3.0,
    micro_seconds=2.0,
    micro_repeats=7,
)

QUICK = Settings(
    quick=True,
    rounds=1,
    wrk_seconds=1,
    wrk_warmup_seconds=0,
    connections=16,
    long_seconds=1.5,
    ping_interval=0.02,
    tasks=10_000,
    tasks_window=1.0,
    micro_seconds=0.2,
    micro_repeats=3,
    idle_seconds=4.0,
)
