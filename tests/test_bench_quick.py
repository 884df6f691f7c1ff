"""The benchmark's quick mode runs end to end, so the benchmark code never rots.

It asserts that every figure was measured for every peer, never a value: speed
targets are met in bench/, on a quiet machine, not in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_quick_benchmark_measures_every_figure(tmp_path):
    bench("--quick", "--out", str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    missing = [
        (figure.get("figure"), row.get("peer"), row.get("not_measured"))
        for figure in results["figures"]
        for row in figure.get("rows", [])
        if row.get("not_measured")
    ]
    assert results["all_measured"] and results["complete"], missing
    assert (tmp_path / "RESULTS.md").is_file() and (tmp_path / "results.png").is_file()

    # --render writes the same report again from results.json, measuring nothing.
    written = (tmp_path / "RESULTS.md").read_text()
    (tmp_path / "RESULTS.md").unlink()
    bench("--render", "--out", str(tmp_path))
    assert (tmp_path / "RESULTS.md").read_text() == written
