"""Shared helpers of the cdp CLI tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No CDP_* variable from the caller's shell, and a fresh current directory."""
    for key in list(os.environ):
        if key.startswith("CDP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path
