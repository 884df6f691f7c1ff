"""Soak (issue 6): many invocations and background tasks in one server, nothing left behind.

CI runs the shortened soak of ``tests/soak.py`` (6,000 invocations, 600 background
tasks: succeeding, failing, cancelled while queued or running, exceeding their
maximum duration) on each server, and checks that afterwards the registry is
empty, every task has exactly one final record with the expected status, the
serving process's thread count is back to its value after warm-up, and its
resident memory grew by less than 10 % after warm-up.

The full soak (100,000 invocations, 10,000 background tasks) is one command::

    python tests/soak.py --full [--server gunicorn]

or, through pytest, ``SOAK=full python -m pytest tests/test_soak.py -s``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soak

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

FULL = os.environ.get("SOAK", "").lower() == "full"


@pytest.mark.timeout(1800 if FULL else 300)
@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_soak(kind: str, tmp_path: Path) -> None:
    invocations = soak.FULL_INVOCATIONS if FULL else soak.CI_INVOCATIONS
    tasks = soak.FULL_TASKS if FULL else soak.CI_TASKS
    result = soak.soak(kind, tmp_path, invocations, tasks)
    print("\n" + result.report())
    assert result.invocations >= invocations
    assert result.tasks >= tasks
    assert not result.problems, result.problems
    assert result.threads_end == result.threads_warm
    assert result.rss_growth < soak.MAX_RSS_GROWTH
