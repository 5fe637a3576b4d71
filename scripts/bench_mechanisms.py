#!/usr/bin/env python3
"""Measured speed-up of each mechanism over standard, beside the FLOP model's, on this machine.

    .venv/bin/python scripts/bench_mechanisms.py [--out bench-out] [--presets mnist-tiny,mnist-wide]

For each preset it trains the four mechanisms briefly on mnist-5k (latency does not depend on
the weights, but export verifies against real samples), exports fp32 ONNX and TFLite, and
measures all eight artifacts interleaved in one process with one thread. It prints p50 latency
per mechanism and runtime, the measured speed-up over standard next to the whole-model FLOP
speed-up (and their ratio: how much of the FLOP model's promise the runtime delivers), the achieved
GFLOP/s, the harness overhead, and this CPU's single-thread sgemm rate as a practical peak.
Timing targets live here rather than in unit tests: a shared machine makes single timings noisy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the sgemm peak below is single-threaded, as the bench
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from payattn.bench import bench  # noqa: E402
from payattn.export import export  # noqa: E402
from payattn.mechanisms import MECHANISMS  # noqa: E402
from payattn.runtime.settings import BenchSettings  # noqa: E402
from payattn.train import train  # noqa: E402


def sgemm_gflops(n: int = 512, repeats: int = 30) -> float:
    """Median single-thread float32 matmul rate: what this core sustains on dense work."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * n**3 / statistics.median(times) / 1e9


def measure(preset: str, out: Path, runs: int, min_seconds: float) -> list[dict]:
    dirs = []
    for mech in MECHANISMS:
        run_dir, art_dir = out / "runs" / preset / mech, out / "artifacts" / preset / mech
        if not (art_dir / "manifest.json").is_file():
            train("mnist-5k", mech, run_dir, preset=preset, epochs=1, force=True)
            export(run_dir, art_dir, ["fp32"], force=True)
        dirs.append(art_dir)
    settings = BenchSettings(runs=runs, min_seconds=min_seconds, warmup_seconds=1.0)
    return bench(dirs, runtimes=("onnxruntime", "litert"), precisions=("fp32",), settings=settings,
                 results_path=out / "results.jsonl", device_name="local")


def summarise(preset: str, results: list[dict], peak: float) -> None:
    print(f"\n## {preset}: fp32, 1 thread, interleaved\n")
    print("| runtime | mechanism | p50 ms | measured speed-up | FLOP speed-up | measured / FLOP | GFLOP/s |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for runtime in ("onnxruntime", "litert"):
        rows = {r["mechanism"]: r for r in results if r["runtime"]["name"] == runtime}
        base = rows["standard"]
        for mech in MECHANISMS:
            r = rows[mech]
            p50 = r["latency_ms"]["p50"]
            measured = base["latency_ms"]["p50"] / p50
            flop = base["flops"] / r["flops"]
            share = "—" if mech == "standard" else f"{measured / flop:.0%}"
            gflops = r["flops"] / (p50 / 1e3) / 1e9
            print(f"| {runtime} | {mech} | {p50:.4f} | {measured:.2f}× | {flop:.2f}× | {share} | "
                  f"{gflops:.2f} ({gflops / peak:.0%} of sgemm) |")
    overheads = [r["harness_overhead_ms"] for r in results if r["harness_overhead_ms"] is not None]
    print(f"\nharness overhead per call: {statistics.median(overheads) * 1e3:.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--presets", default="mnist-tiny,mnist-wide")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    args = parser.parse_args()
    peak = sgemm_gflops()
    print(f"single-thread sgemm (512×512, numpy): {peak:.1f} GFLOP/s")
    for preset in args.presets.split(","):
        summarise(preset, measure(preset, args.out, args.runs, args.min_seconds), peak)


if __name__ == "__main__":
    main()
