"""Latency statistics and the interleaved timing harness.

The schedule follows TFLite's benchmark_model and ORT's perf test: init (timed by the runner),
one first inference, warm-up until both a run count and a minimum time are reached, then
measured runs until both a run count and a minimum time are reached. Runners under comparison
share one process and take turns in blocks of `block` runs (round-robin), so machine noise
(thermal throttling, other processes) hits all of them alike. Each runner stops once its own
count and time are satisfied; its time is the sum of its own measured runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

BLOCK_RUNS = 10
# The job schema's bound on runs. A fast model under a long --min-seconds would otherwise
# keep every sample (tens of GB within an hour): time stops counting once a call has this many.
MAX_SAMPLES = 1_000_000
PERCENTILES = (10, 50, 90, 99)
T = TypeVar("T")


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """mean, std, min, p10, p50, p90, p99, max of per-inference times (ms).

    std is the population standard deviation (as benchmark_model reports it); percentiles
    interpolate linearly between the closest ranks (numpy's default, Excel's PERCENTILE.INC).
    """
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("no latency samples to summarise")
    p10, p50, p90, p99 = np.percentile(samples, PERCENTILES)
    stats = {"mean": samples.mean(), "std": samples.std(), "min": samples.min(),
             "p10": p10, "p50": p50, "p90": p90, "p99": p99, "max": samples.max()}
    return {key: round(float(value), 6) for key, value in stats.items()}


def time_call(call: Callable[[], Any]) -> int:
    """Nanoseconds taken by one call: the one timing primitive every measurement uses."""
    start = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - start


def _empty() -> None:
    return None


def harness_overhead_ms(calls: int = 2000) -> float:
    """Mean time of an empty call timed exactly as inferences are: what every sample includes
    beyond the inference itself. Reported beside the latencies, not subtracted from them."""
    total = sum(time_call(_empty) for _ in range(calls))
    return round(total / calls / 1e6, 6)


def run_interleaved(calls: Sequence[Callable[[], Any]], runs: int, min_seconds: float,
                    block: int = BLOCK_RUNS, max_samples: int = MAX_SAMPLES) -> list[list[float]]:
    """Run each call until it has at least `runs` samples and `min_seconds` of measured time
    (or `max_samples`, whichever comes first for the time), taking turns in blocks of `block`
    runs; return each call's samples in ms."""
    samples: list[list[float]] = [[] for _ in calls]
    spent_ns = [0] * len(calls)
    min_ns = min_seconds * 1e9

    def needs_time(i: int) -> bool:
        return spent_ns[i] < min_ns and len(samples[i]) < max_samples

    def unfinished() -> list[int]:
        return [i for i in range(len(calls)) if len(samples[i]) < runs or needs_time(i)]

    pending = unfinished()
    while pending:
        for i in pending:
            # Past the time minimum, stop at exactly `runs` rather than at the end of a block.
            count = block if needs_time(i) else min(block, runs - len(samples[i]))
            for _ in range(count):
                ns = time_call(calls[i])
                spent_ns[i] += ns
                samples[i].append(ns / 1e6)
        pending = unfinished()
    return samples


def peak_rss_growth(action: Callable[[], T]) -> tuple[T, int | None]:
    """Run `action`; return its result and how far the process's peak resident set rose above
    the resident set just before it, in bytes (None where the OS does not tell).

    Several artifacts share one process, so a process-wide peak (ru_maxrss) would say nothing
    about any one of them. On Linux the peak (VmHWM) is reset through /proc/self/clear_refs
    first, so the figure is this action's own peak growth: model weights, arena, first run.
    """
    before = _status_bytes("VmRSS")
    reset = before is not None and _reset_peak()
    result = action()
    peak = _status_bytes("VmHWM") if reset else None
    if before is None or peak is None:
        return result, None
    return result, max(0, peak - before)


def _status_bytes(field: str) -> int | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # Linux >= 4.0: reset the peak RSS to the current RSS
        return True
    except OSError:
        return False
