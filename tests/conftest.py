"""Shared fixtures: a per-test result store, real Redis (tests/redis_server.py) and
moto's standalone server for the AWS stores (tests/moto_server.py)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["redis_server", "moto_server"]


@pytest.fixture(autouse=True)
def _isolated_result_store(tmp_path, monkeypatch):
    """Every test, and every server it starts, writes task records under its own tmp_path."""
    monkeypatch.setenv("AGENTCORE_SYNC_RESULT_STORE", f"sqlite:///{tmp_path / 'results.db'}")
    yield


#: Every test says what it needs (setup.cfg registers the markers): at least one of these.
KIND_MARKERS = ("unit", "e2e", "slow")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that carries none of unit/e2e/slow (checked before ``-m`` deselects)."""
    unmarked = [
        item.nodeid
        for item in items
        if not any(item.get_closest_marker(kind) for kind in KIND_MARKERS)
    ]
    if unmarked:
        shown = "\n  ".join(unmarked[:20]) + ("\n  ..." if len(unmarked) > 20 else "")
        raise pytest.UsageError(
            f"{len(unmarked)} test(s) carry none of the markers {', '.join(KIND_MARKERS)}; "
            "give the module a `pytestmark = pytest.mark.<kind>` line "
            f"(unit: no sockets or subprocesses; e2e: real servers; slow: soak, bench, load):\n  "
            + shown
        )


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
