#!/usr/bin/env python3
"""Measured speed-up of each mechanism over standard, beside the FLOP model's, on this machine.

    .venv/bin/python scripts/bench_mechanisms.py [--out bench-out] [--presets mnist-tiny,mnist-wide,imdb-paper]
                                                [--precisions fp32,int8] [--threads 1,2]

For each preset it trains the four mechanisms on the embedded data (mnist-5k for vision
presets, movie-reviews for text) for the task's default epochs (latency does not depend on the
weights, but the reduced precisions' agreement with PyTorch does, and a briefly trained model's
near-tied logits would understate it), exports ONNX and the requested TFLite precisions, and
measures every artifact interleaved in one process, once per thread count.
It prints p50 latency per mechanism, runtime and precision; the measured speed-up over standard
next to the whole-model FLOP speed-up (and their ratio: how much of the FLOP model's promise the
runtime delivers); LiteRT over ONNX Runtime and int8 over fp32; achieved GFLOP/s as a share of
this core's single-thread sgemm rate; the speed-up from 2 threads; and each artifact's peak
memory; each reduced precision's top-1 agreement with PyTorch; with --profile, ONNX Runtime's
time per operator type and the attention layers' share of it for each mechanism, from the
profiling pass `payattn bench --profile` runs (LiteRT's Python API has no per-operator timings).
Timing targets live here rather than in unit tests: a shared machine makes single timings
noisy, and only the ratios of one interleaved run compare.

The sgemm reference runs in a child process with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
removed from its environment (and that child only): a machine may pin OpenBLAS to an older
kernel (Haswell: AVX2) for reproducible tests, which halves its rate on an AVX-512 core and
would flatter every share measured against it. threadpoolctl reports the kernel that ran.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the sgemm reference is single-threaded, as the bench
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from payattn.bench import bench  # noqa: E402
from payattn.errors import PayattnError  # noqa: E402
from payattn.export import PartialExport, export  # noqa: E402
from payattn.export.manifest import Manifest  # noqa: E402
from payattn.mechanisms import MECHANISMS  # noqa: E402
from payattn.config import get_preset  # noqa: E402
from payattn.pipeline import ensure_run  # noqa: E402
from payattn.runtime.settings import BenchSettings  # noqa: E402

TASK_OF_KIND = {"vision": "mnist-5k", "text": "movie-reviews"}  # the embedded data a preset trains on
PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # what the honest reference runs without
AVX512_KERNELS = ("SkylakeX", "Cooperlake", "SapphireRapids")  # OpenBLAS's AVX-512 core types
SGEMM = """
import json, statistics, time
import numpy as np
from threadpoolctl import threadpool_info
n, repeats = 512, 30
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = a.T.copy()
times = []
for _ in range(repeats):
    started = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - started)
blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"gflops": 2 * n**3 / statistics.median(times) / 1e9,
                  "kernel": blas[0].get("architecture") if blas else None,
                  "library": blas[0].get("internal_api") if blas else None}))
"""


def avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def sgemm(pinned: bool) -> dict:
    """Median single-thread 512² float32 matmul rate of numpy's BLAS, in a child process:
    with this environment's OpenBLAS pins (`pinned`) or without them."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if not pinned:
        for name in PINS:
            env.pop(name, None)
    out = subprocess.run([sys.executable, "-c", SGEMM], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def measure(preset: str, out: Path, precisions: list[str], settings: BenchSettings) -> list[dict]:
    task = TASK_OF_KIND[get_preset(preset).kind]
    dirs = []
    for mech in MECHANISMS:
        art_dir = out / "artifacts" / preset / mech
        if not (art_dir / "manifest.json").is_file():
            run_dir, _ = ensure_run(task, mech, out / "runs" / preset, preset=preset)
            try:
                export(run_dir, art_dir, precisions, force=True)
            except PartialExport as exc:  # the rest was written: bench it, and say what is missing
                print(f"note: {exc}")
        dirs.append(art_dir)
    return bench(dirs, runtimes=("onnxruntime", "litert"), precisions=precisions, settings=settings,
                 results_path=out / "results.jsonl", device_name="local")


def print_agreement(preset: str, out: Path, precisions: list[str]) -> None:
    """Top-1 agreement with PyTorch of each reduced precision, as the export measured it."""
    reduced = [p for p in precisions if p != "fp32"]
    if not reduced:
        return
    print(f"\n## {preset}: top-1 agreement with PyTorch (export check, test samples)\n")
    print("| precision | " + " | ".join(MECHANISMS) + " |")
    print("|---|" + "--:|" * len(MECHANISMS))
    manifests = [Manifest.load(out / "artifacts" / preset / mech) for mech in MECHANISMS]
    for precision in reduced:
        cells = []
        for manifest in manifests:
            try:
                parity = manifest.artifact(precision)["parity"]
            except PayattnError:
                cells.append("left out")  # failed its floor: see the export's note
                continue
            cells.append(f"{parity['top1_agreement']:.1%}")
        print(f"| {precision} | " + " | ".join(cells) + " |")


def print_profiles(preset: str, results: list[dict]) -> None:
    print(f"\n## {preset}: ONNX Runtime per-operator profile (fp32, 1 thread)\n")
    print("| mechanism | attention share | top operators (share of kernel time) |")
    print("|---|--:|---|")
    for mech in MECHANISMS:
        profile = next(r["profile"] for r in results if r["mechanism"] == mech and r["threads"] == 1
                       and r["runtime"]["name"] == "onnxruntime")
        top = ", ".join(f"{o['op']} {o['share']:.0%}" for o in profile["operators"][:5])
        print(f"| {mech} | {profile['attention_share']:.0%} | {top} |")


def summarise(preset: str, results: list[dict], peak: float) -> None:
    p50 = {(r["runtime"]["name"], r["artifact"]["precision"], r["threads"], r["mechanism"]): r["latency_ms"]["p50"]
           for r in results}
    flops = {r["mechanism"]: r["flops"] for r in results}
    memory = {(r["runtime"]["name"], r["artifact"]["precision"], r["mechanism"]): r["peak_memory_bytes"]
              for r in results if r["threads"] == 1}
    threads = sorted({key[2] for key in p50})
    series = sorted({key[:2] for key in p50}, key=lambda k: (k[0] != "onnxruntime", k[1] != "fp32", k[1]))
    for count in threads:
        print(f"\n## {preset}: {count} thread{'s' * (count > 1)}, interleaved\n")
        print("| runtime | precision | mechanism | p50 µs | speed-up | FLOP speed-up | measured / FLOP "
              "| LiteRT / ORT | int8 / fp32 | GFLOP/s (% of sgemm) | 1→2 threads | peak MiB |")
        print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for runtime, precision in series:
            base = p50[runtime, precision, count, "standard"]
            for mech in MECHANISMS:
                t = p50[runtime, precision, count, mech]
                measured, model = base / t, flops["standard"] / flops[mech]
                share = "—" if mech == "standard" else f"{measured / model:.0%}"
                ort = p50.get(("onnxruntime", "fp32", count, mech))
                vs_ort = f"{t / ort:.2f}" if runtime == "litert" and ort else "—"
                fp32 = p50.get((runtime, "fp32", count, mech))
                vs_fp32 = f"{t / fp32:.2f}" if precision != "fp32" and fp32 else "—"
                gflops = flops[mech] / (t / 1e3) / 1e9
                two = p50.get((runtime, precision, 2, mech))
                scaling = f"{p50[runtime, precision, 1, mech] / two:.2f}×" if two and (runtime, precision, 1, mech) in p50 else "—"
                mem = memory.get((runtime, precision, mech))
                mib = f"{mem / 2**20:.1f}" if mem is not None else "—"
                print(f"| {runtime} | {precision} | {mech} | {t * 1e3:.1f} | {measured:.2f}× | {model:.2f}× | "
                      f"{share} | {vs_ort} | {vs_fp32} | {gflops:.1f} ({gflops / peak:.0%}) | {scaling} | {mib} |")
    overheads = [r["harness_overhead_ms"] for r in results if r["harness_overhead_ms"] is not None]
    print(f"\nharness overhead per call: {statistics.median(overheads) * 1e3:.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--presets", default="mnist-tiny,mnist-wide")
    parser.add_argument("--precisions", default="fp32,int8", help="TFLite precisions; ONNX is fp32")
    parser.add_argument("--threads", default="1,2", help="thread counts, each measured in its own round")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--profile", action="store_true", help="also print ONNX Runtime's per-operator profile")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    args = parser.parse_args()
    pinned, free = sgemm(pinned=True), sgemm(pinned=False)
    if avx512() and free["kernel"] not in AVX512_KERNELS:
        print(f"warning: this CPU has AVX-512 but OpenBLAS ran its {free['kernel']} kernel: the sgemm "
              f"reference is below this core's peak")
    print(f"single-thread sgemm (512×512, numpy): {free['gflops']:.1f} GFLOP/s with OpenBLAS's own "
          f"choice of kernel ({free['kernel']}); {pinned['gflops']:.1f} GFLOP/s under this environment's "
          f"pins ({', '.join(f'{k}={os.environ[k]}' for k in PINS if k in os.environ) or 'none'}: "
          f"{pinned['kernel']}). Shares below are of the first.")
    settings = BenchSettings(threads=tuple(int(t) for t in args.threads.split(",")), runs=args.runs,
                             min_seconds=args.min_seconds, warmup_seconds=1.0, profile=args.profile)
    for preset in args.presets.split(","):
        try:
            results = measure(preset, args.out, args.precisions.split(","), settings)
        except PayattnError as exc:
            sys.exit(f"{preset}: {exc}")
        summarise(preset, results, free["gflops"])
        print_agreement(preset, args.out, args.precisions.split(","))
        if args.profile:
            print_profiles(preset, results)


if __name__ == "__main__":
    main()
