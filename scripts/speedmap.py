#!/usr/bin/env python3
"""Where the paper's speed-up claims hold on real runtimes: a map over context length and width.

    .venv/bin/python scripts/speedmap.py [--out speedmap-out] [--lengths 16,64,256] [--widths 64,256,512]

For every (ℓ, d_m) of the grid it builds one-block vision models of the four mechanisms with
random weights (latency does not depend on them; no training), exports each to ONNX and fp32
TFLite through payattn's own export path, checks both against PyTorch on one random input, and
measures the eight artifacts of that shape interleaved in one process with one thread. It
prints, per shape and runtime, each mechanism's measured speed-up over standard beside the
FLOP model's (whole model, and attention alone), and plots measured against modelled speed-up
per runtime (speedmap.png): points on the diagonal deliver what the FLOP count promises.
The paper's claims: efficient up to 2× faster (ℓ ≪ d_m), super up to 45% faster when ℓ ≤ d_m.

Models: 2×2 patches of a one-channel image (ℓ = patches), one block, MLP width 2·d_m, the
mechanisms' default heads (4 for standard and optimised, 1 for efficient and super) unless
--heads sets one count for all.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from payattn.cost import attention_flops, model_cost
from payattn.export import verify
from payattn.export.onnx_graph import example_input, export_onnx
from payattn.export.tflite import convert
from payattn.mechanisms import MECHANISMS
from payattn.config import ModelConfig, Preset, resolve_config
from payattn.models import build_model
from payattn.runtime.runners import open_runner
from payattn.runtime.timing import run_interleaved

RUNTIMES = {"onnxruntime": "model.onnx", "litert": "model_fp32.tflite"}
PATCH = 2


def config(mechanism: str, ell: int, d_model: int, heads: int | None) -> ModelConfig:
    side = math.isqrt(ell)
    if side * side != ell:
        raise SystemExit(f"context length {ell} is not a square number of patches")
    shape = Preset("speedmap", "vision", d_model=d_model, heads=4, depth=1, mlp_dim=2 * d_model,
                   num_classes=10, image_size=side * PATCH, patch_size=PATCH, channels=1)
    return resolve_config(shape, mechanism, heads=heads)


def build(cfg: ModelConfig, out: Path) -> dict[str, dict]:
    """Export one random-weight model; return each runtime's input spec (checked for parity)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # off the identity W^A, so every product is real work
            p.add_(0.05 * torch.randn_like(p))
    export_onnx(model, cfg, out / "model.onnx")
    convert(out / "model.onnx", out, ["fp32"], None)
    x = np.random.default_rng(0).standard_normal(tuple(example_input(cfg).shape)).astype(np.float32)
    reference = verify.torch_logits(model, x)
    specs = {}
    for runtime, name in RUNTIMES.items():
        runner = (verify.open_onnx(out / name) if runtime == "onnxruntime"
                  else verify.open_tflite(out / name, x.shape))
        diff = float(np.abs(runner.run(x) - reference).max())
        if diff > 1e-3:
            raise SystemExit(f"{out / name} differs from PyTorch by {diff:.3g}")
        specs[runtime] = runner.inputs
    return specs


def measure(ell: int, d_model: int, heads: int | None, out: Path, runs: int, min_seconds: float) -> list[dict]:
    """p50 of the four mechanisms × two runtimes at one shape, interleaved."""
    points = []
    for mechanism in MECHANISMS:
        cfg = config(mechanism, ell, d_model, heads)
        where = out / f"l{ell}-d{d_model}" / mechanism
        for runtime, spec in build(cfg, where).items():
            runner = open_runner(runtime, where / RUNTIMES[runtime], spec, threads=1)
            points.append({"l": ell, "d": d_model, "mechanism": mechanism, "runtime": runtime,
                           "runner": runner, "flops": model_cost(cfg).flops,
                           "attention_flops": attention_flops(mechanism, d_model, ell)})
    samples = run_interleaved([p["runner"].run for p in points], runs, min_seconds)
    for point, times in zip(points, samples):
        point["p50_ms"] = float(np.median(times))
        del point["runner"]
    return points


def speedups(points: list[dict]) -> list[dict]:
    """Each point's measured and modelled speed-up over standard at its shape and runtime."""
    base = {(p["l"], p["d"], p["runtime"]): p for p in points if p["mechanism"] == "standard"}
    for p in points:
        b = base[p["l"], p["d"], p["runtime"]]
        p["measured"] = b["p50_ms"] / p["p50_ms"]
        p["model"] = b["flops"] / p["flops"]
        p["attention_model"] = b["attention_flops"] / p["attention_flops"]
    return [p for p in points if p["mechanism"] != "standard"]


def table(rows: list[dict]) -> str:
    lines = ["| ℓ | d_m | runtime | mechanism | standard p50 µs | p50 µs | measured speed-up | "
             "FLOP model (whole) | FLOP model (attention) | measured / model |",
             "|--:|--:|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        standard = r["p50_ms"] * r["measured"]
        lines.append(f"| {r['l']} | {r['d']} | {r['runtime']} | {r['mechanism']} | {standard * 1e3:.1f} | "
                     f"{r['p50_ms'] * 1e3:.1f} | {r['measured']:.2f}× | {r['model']:.2f}× | "
                     f"{r['attention_model']:.2f}× | {r['measured'] / r['model']:.0%} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    fig = Figure(figsize=(10, 4.5))
    markers = {"optimised": "s", "efficient": "o", "super": "^"}
    for i, runtime in enumerate(RUNTIMES):
        ax = fig.add_subplot(1, len(RUNTIMES), i + 1)
        for mechanism, marker in markers.items():
            mine = [r for r in rows if r["runtime"] == runtime and r["mechanism"] == mechanism]
            ax.scatter([r["model"] for r in mine], [r["measured"] for r in mine], marker=marker,
                       label=mechanism, c=[math.log2(r["l"] / r["d"]) for r in mine], cmap="coolwarm",
                       vmin=-5, vmax=2, edgecolors="black", linewidths=0.5)
        top = max(max(r["measured"] for r in rows), max(r["model"] for r in rows)) * 1.05
        ax.plot([0.5, top], [0.5, top], color="grey", linewidth=0.8, linestyle="--")
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set(title=runtime, xlabel="FLOP-model speed-up over standard (whole model)",
               ylabel="measured speed-up (p50)", xlim=(0.5, top), ylim=(0.5, top))
        ax.legend(title="colour: log2(ℓ / d_m)", fontsize=8)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("speedmap-out"))
    parser.add_argument("--lengths", default="16,64,256", help="context lengths ℓ (square numbers)")
    parser.add_argument("--widths", default="64,256,512", help="model widths d_m")
    parser.add_argument("--heads", type=int, default=None,
                        help="heads for every mechanism (default: theirs, 4 for standard and optimised, 1 for "
                             "efficient and super); the FLOP model ignores softmax, whose work grows with h·ℓ²")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--min-seconds", type=float, default=0.3)
    args = parser.parse_args()
    started = time.perf_counter()
    points = []
    for ell in (int(v) for v in args.lengths.split(",")):
        for d_model in (int(v) for v in args.widths.split(",")):
            points += measure(ell, d_model, args.heads, args.out, args.runs, args.min_seconds)
            print(f"ℓ={ell} d_m={d_model} measured ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = speedups(points)
    text = table(rows)
    (args.out / "speedmap.md").write_text(text + "\n")
    plot(rows, args.out / "speedmap.png")
    print(text)
    print(f"\n{args.out / 'speedmap.png'}; {time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
