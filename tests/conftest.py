"""Shared fixtures: a per-test result store, and real Redis (tests/redis_server.py)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["redis_server"]


@pytest.fixture(autouse=True)
def _isolated_result_store(tmp_path, monkeypatch):
    """Every test, and every server it starts, writes task records under its own tmp_path."""
    monkeypatch.setenv("AGENTCORE_SYNC_RESULT_STORE", f"sqlite:///{tmp_path / 'results.db'}")
    yield


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
