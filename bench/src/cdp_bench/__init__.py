"""CDP benchmarks: each figure beside a raw baseline measured in the same run, and their ratio.

Public: run_ingest_bench, run_latency_bench (async, return a dict) and render(result).
"""

from __future__ import annotations

from .cli import main, render
from .ingest import run_ingest_bench
from .latency import run_latency_bench

__all__ = ["main", "render", "run_ingest_bench", "run_latency_bench"]
