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


def run(
    *, quick: bool, out: Path, rounds: int | None, require_all: bool, only: set[int] | None = None
) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    settings = QUICK if quick else FULL
    if rounds:
        settings = dataclasses.replace(settings, rounds=rounds)
    started_at = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="quick-" if quick else "full-", dir=WORK_DIR))
    ctx = measure.Context(settings, work_dir, wrk_missing=ensure_wrk())
    built = figure_defs.build()
    ping, echo, starved, registry, overhead, started, loaded, workers, microvm = built
    all_figures = built

    groups = [
        (measure.micro, registry, overhead),
        (measure.throughput, ping, echo),
        (measure.starvation, starved),
        (measure.tasks, started, loaded),
        (measure.workers, workers),
        (measure.microvm, microvm),
    ]
    if only:
        groups = [g for g in groups if any(figure.number in only for figure in g[1:])]
    for group, *figures in groups:
        group_began = time.monotonic()
        group(ctx, *figures)
        numbers = ", ".join(str(figure.number) for figure in figures)
        print(f"bench: figures {numbers} took {time.monotonic() - group_began:.1f} s", flush=True)

    described = machine.describe(settings, started_at, time.monotonic() - began)
    if only:
        _keep_the_others(out, all_figures, only)
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


def _keep_the_others(out: Path, figures: list, only: set[int]) -> None:
    """The figures not measured now take their values from ``out/results.json``, each
    row with a note of when they were measured."""
    path = out / "results.json"
    if not path.exists():
        return
    data = json.loads(path.read_text())
    when = data["machine"].get("started_at") or data["machine"].get("date", "an earlier run")
    by_number = {figure.number: figure for figure in figures}
    for saved in data["figures"]:
        figure = by_number.get(saved["figure"])
        if figure is None or figure.number in only:
            continue
        for saved_row in saved["rows"]:
            row = figure.rows[saved_row["peer"]]
            row.samples = {key: list(values) for key, values in saved_row["samples"].items()}
            note = f"measured in the run of {when}"
            row.notes = [n for n in saved_row["notes"] if not n.startswith("measured in the run")]
            row.notes.append(note)
            row.not_measured = saved_row["not_measured"]


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
        only=args.figures,
    )


if __name__ == "__main__":
    sys.exit("run bench/run.py instead")
