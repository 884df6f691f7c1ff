"""One benchmark run: every figure, peers taking turns, then the report."""

import dataclasses
import datetime
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import figures as figure_defs
from . import machine, measure, report
from .bootstrap import ensure_wrk
from .config import FULL, QUICK, WORK_DIR


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # so atexit stops the servers


def run(*, quick: bool, out: Path, rounds: int | None, require_all: bool) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    settings = QUICK if quick else FULL
    if rounds:
        settings = dataclasses.replace(settings, rounds=rounds)
    started_at = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="quick-" if quick else "full-", dir=WORK_DIR))
    ctx = measure.Context(settings, work_dir, wrk_missing=ensure_wrk())
    ping, echo, starved, registry, overhead, started, loaded, workers = figure_defs.build()
    all_figures = [ping, echo, starved, registry, overhead, started, loaded, workers]

    groups = [
        (measure.micro, registry, overhead),
        (measure.throughput, ping, echo),
        (measure.starvation, starved),
        (measure.tasks, started, loaded),
        (measure.workers, workers),
    ]
    for group, *figures in groups:
        group_began = time.monotonic()
        group(ctx, *figures)
        numbers = ", ".join(str(figure.number) for figure in figures)
        print(f"bench: figures {numbers} took {time.monotonic() - group_began:.1f} s", flush=True)

    described = machine.describe(settings, started_at, time.monotonic() - began)
    data = report.write(out, all_figures, described)
    _print_summary(data, out)
    if data["complete"]:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"bench: server logs and scratch files kept in {work_dir}")
    if require_all and not data["complete"]:
        return 1
    return 0


def _print_summary(data: dict, out: Path) -> None:
    print(f"\nbench: {data['machine']['mode']} run took {data['machine']['duration_s']} s")
    for figure in data["figures"]:
        for row in figure["rows"]:
            if row["not_measured"]:
                print(
                    f"  figure {figure['figure']}: {row['label']}: not measured: "
                    f"{row['not_measured']}"
                )
        for check in figure["checks"]:
            if check["value"] is None:
                continue
            mark = {True: "ok  ", False: "MISS", None: "ref "}[check["ok"]]
            print(
                f"  {mark} figure {figure['figure']}: {check['label']}: {check['value']:.3g}"
                + (f" (target {check['op']} {check['target']:g})" if check["target"] else "")
            )
    print(f"bench: wrote {out / 'RESULTS.md'}, {out / 'results.json'}, {out / report.CHART}")


def render(out: Path) -> int:
    """Write RESULTS.md and results.png again from ``out/results.json``: the measured
    values as they are, the texts (targets, methods, bounds) as they are now."""
    data = json.loads((out / "results.json").read_text())
    built = figure_defs.build()
    by_number = {figure.number: figure for figure in built}
    for saved in data["figures"]:
        figure = by_number[saved["figure"]]
        for saved_row in saved["rows"]:
            row = figure.rows[saved_row["peer"]]
            row.samples = {key: list(values) for key, values in saved_row["samples"].items()}
            row.notes = list(saved_row["notes"])
            row.not_measured = saved_row["not_measured"]
    report.write(out, built, data["machine"])
    print(f"bench: wrote {out / 'RESULTS.md'} again from {out / 'results.json'}")
    return 0


def main(args) -> int:
    if args.render:
        return render(Path(args.out).resolve())
    return run(
        quick=args.quick,
        out=Path(args.out).resolve(),
        rounds=args.rounds,
        require_all=args.require_all,
    )


if __name__ == "__main__":
    sys.exit("run bench/run.py instead")
