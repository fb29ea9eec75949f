"""Embedded servers: `stop` signals only the process it started.

start_nats/start_postgres themselves are exercised by the session fixtures."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from cdp_core import embedded

pytestmark = pytest.mark.component


@pytest.fixture
def sleeper(tmp_path):
    """A long-lived process whose command line names a data folder, like a started server."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(data_dir)])
    try:
        yield proc, data_dir
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def test_stop_refuses_a_pid_running_something_else(sleeper, tmp_path):
    proc, data_dir = sleeper
    other = embedded.Managed("nats", proc.pid, "nats://127.0.0.1:1", str(tmp_path / "another"), "log")
    assert other.running() is False
    assert embedded.stop(other, timeout=2) is False
    assert proc.poll() is None and psutil.pid_exists(proc.pid)  # not signalled


def test_stop_signals_the_matching_process(sleeper):
    proc, data_dir = sleeper
    m = embedded.Managed("nats", proc.pid, "nats://127.0.0.1:1", str(data_dir), "log")
    assert m.running() is True
    assert embedded.stop(m, timeout=5) is True
    proc.wait(5)
    assert not psutil.pid_exists(proc.pid)  # stopped (and reaped by stop's wait)
    assert m.running() is False
    assert embedded.stop(m) is False  # already stopped


def test_a_server_whose_data_is_discarded_is_stopped_without_a_shutdown(tmp_path):
    """discard (a test session's servers): PostgreSQL's immediate shutdown, no checkpoint."""
    m = embedded.start_postgres(tmp_path / "pg", fast=True)
    assert embedded.stop(m, discard=True) is True
    assert m.running() is False
    assert "immediate shutdown request" in open(m.log, encoding="utf-8", errors="replace").read()


def test_a_dead_pid_is_not_running(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(5)
    m = embedded.Managed("postgres", proc.pid, "postgresql://x", str(tmp_path), "log")
    assert m.running() is False
    assert embedded.stop(m) is False


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "stack.json"
    assert embedded.load(path) == []
    ms = [
        embedded.Managed("nats", 1, "nats://127.0.0.1:4222", "/d/nats", "/d/nats.log"),
        embedded.Managed("postgres", 2, "postgresql://postgres@127.0.0.1:5432/postgres", "/d/pg", "/d/pg.log"),
    ]
    embedded.save(path, ms)
    assert embedded.load(path) == ms


def test_free_port_is_bindable():
    import socket

    port = embedded.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
