"""Benchmark agentcore_sync against the official SDK and a bare WSGI callable.

    python bench/run.py            # full run: writes bench/RESULTS.md, results.png, results.json
    python bench/run.py --quick    # seconds, not minutes: every figure measured once, briefly

It creates bench/.venv (or reuses it) with this project, the official SDK
(bedrock-agentcore, uvicorn) and the servers, installs wrk with apt-get when it is
missing, and re-runs itself inside that venv. See bench/README.md.
"""

import argparse
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from benchlib import bootstrap  # noqa: E402  (needs the path above)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="short runs, one round (the test suite's mode)"
    )
    parser.add_argument(
        "--out",
        default=str(BENCH_DIR),
        help="where to write RESULTS.md, results.png, results.json (default: bench/)",
    )
    parser.add_argument(
        "--no-venv",
        action="store_true",
        help="use this interpreter as it is; peers it cannot import are reported as not measured",
    )
    parser.add_argument("--rounds", type=int, help="override the number of A B A B rounds")
    parser.add_argument(
        "--figures",
        type=lambda text: {int(n) for n in text.split(",")},
        help="measure only these figures (e.g. 9 or 2,9); the others keep their values "
        "from the results.json in --out, with the date they were measured",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: write RESULTS.md and results.png again from results.json",
    )
    parser.add_argument(
        "--require-all",
        action="store_true",
        help="exit 1 unless every peer of every figure was measured",
    )
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args(sys.argv[1:])
    if not args.no_venv and not bootstrap.in_venv():
        python = bootstrap.ensure_venv()
        bootstrap.reexec_in_venv(python, [str(Path(__file__).resolve()), *sys.argv[1:]])
    try:
        from benchlib.main import main as run_main
    except ImportError as exc:
        sys.exit(
            f"bench: {exc}; install the bench extra (pip install -e '.[bench]') or drop --no-venv"
        )
    return run_main(args)


if __name__ == "__main__":
    sys.exit(main())
