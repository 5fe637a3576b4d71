#!/usr/bin/env python3
"""Every road's file of the four mechanisms, timed side by side: which road is fastest, and by how much.

    .venv/bin/python scripts/bench_roads.py [--out roads-out] [--presets mnist-tiny,mnist-wide]
                                            [--roads onnx2tf,litert-torch,onnxruntime,executorch]
                                            [--repeats 3] [--epochs 1]

A road is converter → runtime. For each preset this trains the four mechanisms briefly on the
embedded data (fp32 latency does not depend on the weights; --epochs 1 by default), then makes
every road's fp32 batch-1 file with payattn's own export (`payattn.export.export(...,
converters="all")`, each file verified against PyTorch), from the same nn.Module:

    onnx2tf        model_fp32.tflite → LiteRT
    litert-torch   model_litert-torch_fp32.tflite → LiteRT
    onnxruntime    model.onnx → ONNX Runtime
    executorch     model_fp32.pte (lowered to XNNPACK) → ExecuTorch's runtime

Files already under --out are reused (delete one to rebuild it). All files of all presets are
then timed in one process, interleaved (round-robin, payattn.runtime.timing), one thread each,
--repeats times: a table cell is the median of the repeats' p50s, with their spread (max − min,
as a share of the median) beside it. Compare ratios within one run, never absolute times across
runs. Printed as Markdown: p50 µs per road, each road's ratio to the fastest road of its row,
payattn's onnx2tf file over litert-torch's, each mechanism's speed-up over standard on the same
road, and how much of each graph LiteRT's and ExecuTorch's XNNPACK delegate takes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from payattn.config import get_preset
from payattn.errors import PayattnError
from payattn.export import PartialExport, export
from payattn.export.app import delegation
from payattn.export.manifest import Manifest
from payattn.mechanisms import MECHANISMS
from payattn.pipeline import ensure_run
from payattn.runtime.runners import open_runner, quiet_native_stderr
from payattn.runtime.timing import run_interleaved

TASK_OF_KIND = {"vision": "mnist-5k", "text": "movie-reviews"}  # the embedded data a preset trains on
ROADS = ("onnx2tf", "litert-torch", "onnxruntime", "executorch")
FILES = {"onnx2tf": "model_fp32.tflite", "litert-torch": "model_litert-torch_fp32.tflite",
         "onnxruntime": "model.onnx", "executorch": "model_fp32.pte"}
FORMAT = {"onnx2tf": "tflite", "litert-torch": "tflite", "onnxruntime": "onnx", "executorch": "pte"}
RUNTIME = {"onnx2tf": "litert", "litert-torch": "litert", "onnxruntime": "onnxruntime", "executorch": "executorch"}


@dataclass
class Entry:
    preset: str
    mechanism: str
    road: str
    path: Path
    call: Callable[[], Any]
    delegated: str  # how much of the graph XNNPACK takes, as a short note
    keep: Any = None  # what must stay alive while `call` runs


def build(road: str, run_dir: Path, art_dir: Path) -> Path:
    """This road's file of the run's model in `art_dir`: payattn's export by every road, made
    unless there already."""
    path = art_dir / FILES[road]
    if not path.is_file():
        try:
            export(run_dir, art_dir, ["fp32"], force=True, converters="all")
        except PartialExport as exc:
            print(f"note: {exc}", file=sys.stderr)
    return path


def _executorch_note(path: Path) -> str:
    """How much of a .pte's graph ExecuTorch's XNNPACK delegate takes."""
    from payattn.export.executorch_road import delegation

    d = delegation(path)
    outside = ", ".join(f"{n}×{op}" for op, n in d["outside"].items())
    return "whole graph" if d["fully_delegated"] else f"{d['partitions']} partitions, outside: {outside}"


def _tflite_note(path: Path) -> str:
    with quiet_native_stderr():
        d = delegation(path)
    outside = ", ".join(f"{n}×{op}" for op, n in d["outside"].items())
    return "whole graph" if d["fully_delegated"] else f"{d['partitions']} partitions, outside: {outside}"


def open_entry(preset: str, mechanism: str, road: str, path: Path) -> Entry:
    """The file loaded in its road's runtime at one thread, fed as its manifest entry says."""
    entry = next(a for a in Manifest.load(path.parent).artifacts if a["file"] == path.name)
    runner = open_runner(RUNTIME[road], path, entry["inputs"], threads=1)
    note = {"executorch": _executorch_note, "onnxruntime": lambda _: "—"}.get(road, _tflite_note)(path)
    return Entry(preset, mechanism, road, path, runner.run, note, runner)


def prepare(preset: str, out: Path, roads: list[str], epochs: int) -> list[Entry]:
    task = TASK_OF_KIND[get_preset(preset).kind]
    entries = []
    for mech in MECHANISMS:
        run_dir, _ = ensure_run(task, mech, out / "runs" / preset, preset=preset, epochs=epochs)
        art_dir = out / "artifacts" / preset / mech
        for road in roads:
            started = time.perf_counter()
            path = build(road, run_dir, art_dir)
            took = time.perf_counter() - started
            if took > 1:
                print(f"built {preset}/{mech} {road}: {path.name} ({took:.0f} s)", file=sys.stderr)
            entries.append(open_entry(preset, mech, road, path))
    return entries


def measure(entries: list[Entry], repeats: int, runs: int, min_seconds: float) -> dict[tuple, list[float]]:
    """p50 µs of every entry, once per repeat (each repeat one interleaved pass over all)."""
    p50s: dict[tuple, list[float]] = {}
    for _ in range(repeats):
        samples = run_interleaved([e.call for e in entries], runs, min_seconds)
        for e, s in zip(entries, samples):
            p50s.setdefault((e.preset, e.mechanism, e.road), []).append(statistics.median(s) * 1e3)
    return p50s


def cell(values: list[float]) -> str:
    mid = statistics.median(values)
    return f"{mid:.1f} ±{(max(values) - min(values)) / 2 / mid:.1%}" if len(values) > 1 else f"{mid:.1f}"


def report(entries: list[Entry], p50s: dict[tuple, list[float]], presets: list[str], roads: list[str]) -> None:
    med = {k: statistics.median(v) for k, v in p50s.items()}
    both = "onnx2tf" in roads and "litert-torch" in roads
    print("\n## p50 µs per road (fp32, 1 thread; ± half the spread of the repeats' p50s)\n")
    head = ["preset", "mechanism", *[f"{r} µs" for r in roads], *[f"{r} / fastest" for r in roads]]
    if both:
        head.append("onnx2tf / litert-torch (per repeat)")
    print("| " + " | ".join(head) + " |")
    print("|---|---|" + "--:|" * (len(head) - 2))
    for preset in presets:
        for mech in MECHANISMS:
            fastest = min(med[preset, mech, r] for r in roads)
            row = [preset, mech, *[cell(p50s[preset, mech, r]) for r in roads],
                   *[f"{med[preset, mech, r] / fastest:.2f}" for r in roads]]
            if both:
                ratios = [a / b for a, b in zip(p50s[preset, mech, "onnx2tf"], p50s[preset, mech, "litert-torch"])]
                row.append(f"{statistics.median(ratios):.3f} ({', '.join(f'{r:.3f}' for r in ratios)})")
            print("| " + " | ".join(row) + " |")
    print("\n## Speed-up over standard on the same road\n")
    print("| preset | mechanism | " + " | ".join(roads) + " |")
    print("|---|---|" + "--:|" * len(roads))
    for preset in presets:
        for mech in MECHANISMS:
            cells = [f"{med[preset, 'standard', r] / med[preset, mech, r]:.2f}×" for r in roads]
            print(f"| {preset} | {mech} | " + " | ".join(cells) + " |")
    delegated = [r for r in roads if r != "onnxruntime"]
    if delegated:
        print("\n## How much of each graph XNNPACK takes\n")
        print("| preset | mechanism | " + " | ".join(delegated) + " |")
        print("|---|---|" + "---|" * len(delegated))
        notes = {(e.preset, e.mechanism, e.road): e.delegated for e in entries}
        for preset in presets:
            for mech in MECHANISMS:
                print(f"| {preset} | {mech} | " + " | ".join(notes[preset, mech, r] for r in delegated) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("roads-out"))
    parser.add_argument("--presets", default="mnist-tiny,mnist-wide")
    parser.add_argument("--roads", default=",".join(ROADS), help=f"any of {', '.join(ROADS)}")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (fp32 latency ignores the weights)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved passes; the spread is between them")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    args = parser.parse_args()
    roads = [r.strip() for r in args.roads.split(",") if r.strip()]
    unknown = [r for r in roads if r not in ROADS]
    if unknown:
        sys.exit(f"unknown road(s) {', '.join(unknown)}; valid roads: {', '.join(ROADS)}")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    try:
        entries = [e for preset in presets for e in prepare(preset, args.out, roads, args.epochs)]
    except PayattnError as exc:
        sys.exit(str(exc))
    print(f"timing {len(entries)} files interleaved, {args.repeats} passes, 1 thread ...", file=sys.stderr)
    report(entries, measure(entries, args.repeats, args.runs, args.min_seconds), presets, roads)


if __name__ == "__main__":
    main()
