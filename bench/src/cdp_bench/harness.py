"""The benchmark harness: a figure is only ever reported beside a raw baseline measured
in the same run, and their ratio.

These machines are shared and noisy, so an absolute figure alone says little; the ratio
to a baseline measured minutes apart on the same machine says much more. `compare` runs
warm-ups of both, then N repetitions that alternate figure and baseline (interleaved, so
drift in the machine's load hits both alike), and reports the median of each.

A workload is a callable (plain or async) taking no argument and returning either a
number or a mapping of named numbers (then `metric` names the one compared; the medians
of the others are kept too).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import platform
import statistics
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

Value = float | Mapping[str, float]
Workload = Callable[[], Value | Awaitable[Value]]


@dataclass
class Comparison:
    name: str
    unit: str
    metric: str
    higher_is_better: bool
    figure: float  # median of the figure's repetitions
    baseline: float  # median of the baseline's repetitions
    ratio: float  # figure / baseline
    figure_runs: list[float]
    baseline_runs: list[float]
    figure_metrics: dict[str, float] = field(default_factory=dict)  # medians of every metric
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    repetitions: int = 1
    warmup: int = 0
    interleaved: bool = True

    def to_json(self) -> dict:
        return asdict(self)

    def render(self) -> str:
        return render_comparison(self)


@contextlib.contextmanager
def frozen_heap():
    """What this (client) process holds now is moved out of the garbage collector's sight
    (gc.freeze) for the measurement, and given back afterwards. The benchmark process holds
    things a bare publisher would not (its stack, channels, prepared requests), and without
    this the baseline's publish_async futures paid for full collections walking all of it —
    the services under test freeze their own heap once started (ingest: CDP_INGEST_GC_FREEZE),
    so the baseline gets the same."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def median(values: list[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def ratio(figure: float, baseline: float) -> float:
    """figure / baseline; inf when the baseline is 0 (and the figure is not), nan for 0/0."""
    if baseline == 0:
        return float("nan") if figure == 0 else float("inf")
    return figure / baseline


def _as_metrics(value: Value, metric: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        if metric not in value:
            raise KeyError(f"workload result lacks the metric {metric!r}: {sorted(value)}")
        return {k: float(v) for k, v in value.items()}
    return {metric: float(value)}


async def _call(fn: Workload) -> Value:
    out = fn()
    if inspect.isawaitable(out):
        out = await out
    return out


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {k: median([r[k] for r in runs]) for k in keys}


async def compare(
    name: str,
    figure: Workload,
    baseline: Workload,
    *,
    repetitions: int = 3,
    warmup: int = 1,
    unit: str = "ops/s",
    metric: str = "value",
    higher_is_better: bool = True,
    interleave: bool = True,
    warmup_figure: Workload | None = None,
    warmup_baseline: Workload | None = None,
) -> Comparison:
    """Warm up both, run both `repetitions` times (interleaved or back to back), report medians.

    warmup_figure / warmup_baseline replace the workloads during warm-up (e.g. a smaller size).
    """
    if repetitions < 1:
        raise ValueError("repetitions must be at least 1")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    for _ in range(warmup):
        await _call(warmup_figure or figure)
        await _call(warmup_baseline or baseline)
    fig_runs: list[dict[str, float]] = []
    base_runs: list[dict[str, float]] = []
    if interleave:
        for i in range(repetitions):
            # Alternate which goes first, so neither always runs on a warmer (or busier) machine.
            order = [(figure, fig_runs), (baseline, base_runs)]
            if i % 2:
                order.reverse()
            for fn, runs in order:
                runs.append(_as_metrics(await _call(fn), metric))
    else:
        for _ in range(repetitions):
            fig_runs.append(_as_metrics(await _call(figure), metric))
        for _ in range(repetitions):
            base_runs.append(_as_metrics(await _call(baseline), metric))
    fm, bm = _medians(fig_runs), _medians(base_runs)
    return Comparison(
        name=name,
        unit=unit,
        metric=metric,
        higher_is_better=higher_is_better,
        figure=fm[metric],
        baseline=bm[metric],
        ratio=ratio(fm[metric], bm[metric]),
        figure_runs=[r[metric] for r in fig_runs],
        baseline_runs=[r[metric] for r in base_runs],
        figure_metrics=fm,
        baseline_metrics=bm,
        repetitions=repetitions,
        warmup=warmup,
        interleaved=interleave,
    )


def _fmt(x: float) -> str:
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def render_comparison(c: Comparison) -> str:
    better = "higher is better" if c.higher_is_better else "lower is better"
    runs = lambda xs: ", ".join(_fmt(x) for x in xs)  # noqa: E731
    return "\n".join([
        f"{c.name} ({c.unit}, {better}; median of {c.repetitions}, {c.warmup} warm-up"
        f"{', interleaved' if c.interleaved else ''})",
        f"  figure    {_fmt(c.figure):>12}   runs: {runs(c.figure_runs)}",
        f"  baseline  {_fmt(c.baseline):>12}   runs: {runs(c.baseline_runs)}",
        f"  ratio     {c.ratio:>12.3f}   (figure / baseline)",
    ])


def machine_info() -> dict:
    """What a figure needs beside it: the machine and the interpreter."""
    info = {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001 - informational only
        return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError("p must be within 0..100")
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def paced(rate: float, n: int, send) -> int:
    """Calls `send(i, scheduled_time)` for i < n as tasks at start + i/rate (open loop: a slow
    answer does not delay the next send); returns n once all have finished."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for i in range(n):
        at = start + i / rate
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, at)))
    await asyncio.gather(*tasks)
    return n


async def fetch_ack_baseline(bus, stream: str, batch: int = 256) -> dict:
    """The bare consumer a projection is compared with: a durable pull consumer over every
    message of `stream`, fetch `batch`, ack each message; msgs/s. It pulls and acks the way the
    consumers do (`Bus.fetch`, `Bus.settle`), which is faster than nats-py's own fetch and
    per-message ack, so the bar is the fastest bare loop; nats-py's loop over the same messages
    is reported beside it (`natspy_fetch_ack_msgs_per_s`)."""
    ours = await _fetch_ack(bus, stream, batch, stock=False)
    stock = await _fetch_ack(bus, stream, batch, stock=True)
    return {"fetch_ack_msgs_per_s": ours[0] / ours[1], "fetch_ack_seconds": ours[1],
            "natspy_fetch_ack_msgs_per_s": stock[0] / stock[1]}


async def _fetch_ack(bus, stream: str, batch: int, *, stock: bool) -> tuple[int, float]:
    async def step(sub) -> int:
        if stock:
            msgs = await sub.fetch(batch, timeout=5)
            for m in msgs:
                await m.ack()
        else:
            msgs = await bus.fetch(sub, batch, 5.0)
            await bus.settle(msgs)
        return len(msgs)

    return await _pull_all(bus, stream, "bench-fetch", step)


async def _pull_all(bus, stream: str, prefix: str, step) -> tuple[int, float]:
    """Times `step(subscription)` (returns how many messages it took) over every message of
    `stream`, through a new durable pull consumer (explicit acks), deleted after."""
    import secrets
    import time

    from nats.js import api

    n = (await bus.js.stream_info(stream)).state.messages
    durable = f"{prefix}-{secrets.token_hex(3)}"
    await bus.js.add_consumer(stream, api.ConsumerConfig(durable_name=durable, deliver_policy=api.DeliverPolicy.ALL,
                                                         ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=10_000))
    sub = await bus.js.pull_subscribe_bind(durable, stream)
    got = 0
    try:
        t = time.perf_counter()
        while got < n:
            got += await step(sub)
        secs = time.perf_counter() - t
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await bus.js.delete_consumer(stream, durable)
    return got, secs


async def pipeline_baseline(bus, stream: str, batch: int = 256) -> dict:
    """The NATS work of a projection that re-publishes what it reads (identity publishes a
    resolved event per event), without the database and without any logic: fetch `batch` from
    a durable pull consumer over `stream`, publish each message's bytes to a scratch stream
    (`Bus.publish_batch`, acks awaited), ack the batch. msgs/s: no such projection in one
    process can be faster."""
    import secrets

    from nats.js import api

    from cdp_core.bus import Outgoing

    tag = secrets.token_hex(3)
    scratch, subject = f"BENCH_PIPE_{tag.upper()}", f"bench.pipe.{tag}"
    await bus.js.add_stream(api.StreamConfig(name=scratch, subjects=[subject], storage=api.StorageType.FILE))

    async def step(sub) -> int:
        msgs = await bus.fetch(sub, batch, 5.0)
        if msgs:
            await bus.publish_batch([Outgoing(subject, m.data, f"{tag}-{m.metadata.sequence.stream}", {})
                                     for m in msgs])
        await bus.settle(msgs)
        return len(msgs)

    try:
        got, secs = await _pull_all(bus, stream, "bench-pipe", step)
    finally:
        with contextlib.suppress(Exception):
            await bus.js.delete_stream(scratch)
    return {"pipeline_msgs_per_s": got / secs, "pipeline_seconds": secs}
