"""Write a run's results: results.json, RESULTS.md and the chart results.png."""

import json
from pathlib import Path

from .bounds import BOUNDS
from .results import Figure, with_unit

CHART = "results.png"
TIMES = "\N{MULTIPLICATION SIGN}"


def _number(fmt: str, value: float | None) -> str:
    """A table cell: the heading gives the unit."""
    return "—" if value is None else fmt.format(value)


def _check_value(figure: Figure, check, value: float | None) -> str:
    if value is None:
        return "—"
    if check.den:
        return f"{value:.2f}{TIMES}"
    return figure.metric(check.num[1]).show(value)


def _check_target(figure: Figure, check) -> str:
    if check.target is None:
        return "(reference)"
    op = {">=": "≥", "<=": "≤"}[check.op]
    if check.den:
        return f"{op} {check.target:g}{TIMES}"
    return with_unit(f"{op} {check.target:g}", figure.metric(check.num[1]).unit)


def _mark(evaluated: dict) -> str:
    if evaluated["not_measured"]:
        return f"not measured: {evaluated['not_measured']}"
    return {True: "✅", False: "❌", None: ""}[evaluated["ok"]]


def _checks_table(figure: Figure, with_figure: bool = False) -> list[str]:
    columns = ["check", "value", "target", "met"]
    if with_figure:
        columns.insert(0, "figure")
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join(["---"] * len(columns)) + " |"]
    for check in figure.checks:
        evaluated = figure.evaluate(check)
        cells = [
            check.label,
            _check_value(figure, check, evaluated["value"]),
            _check_target(figure, check),
            _mark(evaluated),
        ]
        if with_figure:
            cells.insert(0, str(figure.number))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _figure_section(figure: Figure) -> list[str]:
    lines = [f"## Figure {figure.number}: {figure.title}", ""]
    lines += [f"Target: {figure.target_text}", "", f"Method: {figure.method}", ""]
    head = ["peer", *(m.heading for m in figure.metrics), "per round", "notes"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("| " + " | ".join(["---"] * len(head)) + " |")
    for row in figure.rows.values():
        if row.missing:
            cells = [f"not measured: {row.missing}"] + ["—"] * (len(figure.metrics) - 1)
        else:
            cells = [_number(m.fmt, row.value(m.key)) for m in figure.metrics]
        rounds = "; ".join(
            f"{m.key}: " + ", ".join(m.fmt.format(v) for v in row.samples[m.key])
            for m in figure.metrics
            if row.samples.get(m.key)
        )
        notes = "; ".join(row.shown_notes).replace("|", "\\|")
        lines.append("| " + " | ".join([row.peer.label, *cells, rounds, notes]) + " |")
    lines += ["", *_checks_table(figure), ""]
    missed = any(figure.evaluate(check)["ok"] is False for check in figure.checks)
    if missed and figure.number in BOUNDS:
        lines += [f"What bounds it: {BOUNDS[figure.number]}", ""]
    return lines


def _machine_section(machine: dict) -> list[str]:
    conf = machine["gunicorn_config"]
    conf_text = (
        f"{(conf['path'] and Path(conf['path']).name) or 'missing: -k gthread --threads 8'}: "
        f"workers {conf['workers']}, threads {conf['threads']}, {conf['worker_class']}"
    )
    if conf.get("error"):
        conf_text = f"{Path(conf['path']).name} could not be read: {conf['error']}"
    rows = [
        ("date", machine["date"]),
        (
            "mode",
            f"{machine['mode']}, {machine['settings']['rounds']} round(s), "
            f"{machine['duration_s']} s in all",
        ),
        ("commit", machine["commit"]),
        ("cores", f"{machine['cores']} ({machine['usable_cores']} usable)"),
        ("CPU", machine["cpu"]),
        ("memory", f"{machine['memory_gib']} GiB"),
        ("OS", machine["os"]),
        ("Python", machine["python"]),
        ("packages", ", ".join(f"{k} {v}" for k, v in machine["packages"].items())),
        (
            "wrk",
            f"{machine['wrk']}, 1 thread pinned to a core of its own, "
            f"{machine['settings']['connections']} connections, "
            f"{machine['settings']['wrk_seconds']} s per run",
        ),
        ("waitress", f"{machine['waitress_threads']} threads (every peer on it)"),
        ("gunicorn", conf_text),
        ("official SDK thread pool", str(machine["sdk_thread_pool"])),
    ]
    lines = ["## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return [*lines, ""]


def write_markdown(path: Path, figures: list[Figure], machine: dict, chart: bool) -> None:
    lines = [
        "# Benchmarks: agentcore_sync, the official SDK and a bare WSGI callable",
        "",
        f"Written by `python bench/run.py` on {machine['date']} ({machine['mode']} mode). "
        "Do not edit: run the command again. Every peer is measured in the same run, taking "
        "turns (A B A B), and each value is the median of the rounds; the ratios are "
        "what count, not the absolute figures.",
        "",
        "## Summary",
        "",
    ]
    summary = _checks_table(figures[0], with_figure=True)
    for figure in figures[1:]:
        summary += _checks_table(figure, with_figure=True)[2:]
    lines += [*summary, ""]
    if chart:
        lines += [f"![achieved ÷ target per check]({CHART})", ""]
    lines += _machine_section(machine)
    for figure in figures:
        lines += _figure_section(figure)
    path.write_text("\n".join(lines))


def write_chart(path: Path, figures: list[Figure], machine: dict) -> str | None:
    """A bar per check with a target: achieved ÷ target, oriented so ≥ 1 meets it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: {exc}"
    labels, scores, colors, notes = [], [], [], []
    for figure in figures:
        for check in figure.checks:
            if check.target is None:
                continue
            evaluated = figure.evaluate(check)
            value = evaluated["value"]
            labels.append(f"{figure.number}. {check.label}")
            notes.append(
                f"{_check_value(figure, check, value)}, target {_check_target(figure, check)}"
            )
            if value is None:
                scores.append(None)
                colors.append("lightgray")
                continue
            if check.op == ">=":
                score = value / check.target
            else:
                score = check.target / value if value > 0 else 1000.0
            scores.append(score)
            colors.append("tab:green" if evaluated["ok"] else "tab:red")
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(labels) + 1.6))
    ys = range(len(labels))[::-1]
    measured = [s for s in scores if s is not None]
    floor = min([*measured, 0.5]) / 2
    for y, score, color, note in zip(ys, scores, colors, notes, strict=True):
        if score is None:
            ax.text(floor * 1.1, y, "not measured", va="center", fontsize=8, color="gray")
            continue
        ax.barh(y, score - floor, left=floor, color=color, height=0.7)
        ax.text(score * 1.05, y, f"{score:.2f}  ({note})", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(floor, max([*measured, 2.0]) * 8)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(list(ys), labels, fontsize=8)
    ax.set_xlabel("achieved ÷ target (≥ 1 meets the target; log scale)")
    ax.set_title(
        f"agentcore_sync benchmark, {machine['date']}, {machine['mode']} mode, "
        f"{machine['cores']} cores",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write(out: Path, figures: list[Figure], machine: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    chart_error = write_chart(out / CHART, figures, machine)
    data = {
        "machine": machine,
        "chart": chart_error or CHART,
        "figures": [figure.to_json() for figure in figures],
    }
    data["all_measured"] = all(f["measured"] for f in data["figures"])
    data["complete"] = all(f["complete"] for f in data["figures"])
    (out / "results.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    write_markdown(out / "RESULTS.md", figures, machine, chart=chart_error is None)
    return data
