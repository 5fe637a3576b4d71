#!/usr/bin/env python3
"""Every road's file of the four mechanisms, timed side by side: which road is fastest, and by how much.

    .venv/bin/python scripts/bench_roads.py [--out roads-out] [--presets mnist-tiny,mnist-wide]
                                            [--roads onnx2tf,litert-torch,onnxruntime,executorch]
                                            [--repeats 3] [--epochs 1]

A road is converter → runtime. For each preset this trains the four mechanisms briefly on the
embedded data (fp32 latency does not depend on the weights; --epochs 1 by default), then makes,
from the same nn.Module, fp32 batch-1 files for each road asked for:

    onnx2tf        payattn's own export (`payattn.export.export`): model_fp32.tflite → LiteRT
    litert-torch   litert_torch.convert(model, (example,)) → LiteRT
    onnxruntime    payattn's model.onnx → ONNX Runtime
    executorch     to_edge_transform_and_lower(torch.export.export(model, (example,)),
                   partitioner=[XnnpackPartitioner()]) → .pte → ExecuTorch's runtime

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
import contextlib
import io
import statistics
import sys
import time
import warnings
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
FILES = {"onnx2tf": "model_fp32.tflite", "litert-torch": "litert_torch_fp32.tflite",
         "onnxruntime": "model.onnx", "executorch": "executorch_fp32.pte"}
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


def load_model(run_dir: Path) -> tuple[Any, Any]:
    """The trained nn.Module of a run dir and its batch-1 example input (the exported graph's)."""
    from payattn.export.onnx_graph import example_input
    from payattn.train import load_run

    run = load_run(run_dir)
    return run.model.eval(), example_input(run.config)


def build(road: str, run_dir: Path, art_dir: Path) -> Path:
    """This road's file of the run's model in `art_dir`, made unless already there."""
    path = art_dir / FILES[road]
    if path.is_file():
        return path
    if road in ("onnx2tf", "onnxruntime"):
        try:
            export(run_dir, art_dir, ["fp32"], force=True)
        except PartialExport as exc:
            print(f"note: {exc}", file=sys.stderr)
        return path
    import torch

    model, example = load_model(run_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if road == "litert-torch":
            import litert_torch

            litert_torch.convert(model, (example,)).export(str(tmp))
        else:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            edge = to_edge_transform_and_lower(torch.export.export(model, (example,)),
                                               partitioner=[XnnpackPartitioner()])
            tmp.write_bytes(edge.to_executorch().buffer)
    tmp.replace(path)
    return path


def _executorch_runner(path: Path, example: Any) -> tuple[Callable[[], Any], str, Any]:
    """`forward` of a .pte on a one-thread pool; the note counts the operators left outside XNNPACK."""
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    with quiet_native_stderr(), contextlib.redirect_stdout(io.StringIO()):
        portable_lib._unsafe_reset_threadpool(1)  # the pool is process-wide; its default is one per core
        program = Runtime.get().load_program(path)
        method = program.load_method("forward")
    inputs = [example]
    method.execute(inputs)
    return (lambda: method.execute(inputs)), _executorch_outside(path), (program, method, inputs)


def _executorch_outside(path: Path) -> str:
    """'N delegates, M ops outside' from the program's execution plan."""
    from executorch.exir._serialize import _deserialize_pte_binary

    plan = _deserialize_pte_binary(path.read_bytes()).program.execution_plan[0]
    delegates = sum(1 for chain in plan.chains for i in chain.instructions
                    if type(i.instr_args).__name__ == "DelegateCall")
    kernels = sum(1 for chain in plan.chains for i in chain.instructions
                  if type(i.instr_args).__name__ == "KernelCall")
    return f"{delegates} delegates, {kernels} ops outside"


def _tflite_note(path: Path) -> str:
    with quiet_native_stderr():
        d = delegation(path)
    outside = ", ".join(f"{n}×{op}" for op, n in d["outside"].items())
    return "whole graph" if d["fully_delegated"] else f"{d['partitions']} partitions, outside: {outside}"


def open_entry(preset: str, mechanism: str, road: str, run_dir: Path, path: Path) -> Entry:
    if road == "executorch":
        _, example = load_model(run_dir)
        call, note, keep = _executorch_runner(path, example)
        return Entry(preset, mechanism, road, path, call, note, keep)
    if road == "litert-torch":
        from ai_edge_litert.interpreter import Interpreter

        detail = Interpreter(model_path=str(path)).get_input_details()[0]  # litert-torch names it args_0
        spec = [{"name": detail["name"], "shape": [int(s) for s in detail["shape"]], "dtype": "float32"}]
    else:
        fmt = "onnx" if road == "onnxruntime" else "tflite"
        spec = Manifest.load(path.parent).artifact("fp32", fmt)["inputs"]
    runner = open_runner(RUNTIME[road], path, spec, threads=1)
    note = _tflite_note(path) if road in ("onnx2tf", "litert-torch") else "—"
    return Entry(preset, mechanism, road, path, runner.run, note, runner)


def prepare(preset: str, out: Path, roads: list[str], epochs: int) -> list[Entry]:
    task = TASK_OF_KIND[get_preset(preset).kind]
    if get_preset(preset).kind != "vision" and {"litert-torch", "executorch"} & set(roads):
        raise PayattnError(f"{preset}: this study times vision presets only (the torch roads take the "
                           "text models' int64 ids differently)")
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
            entries.append(open_entry(preset, mech, road, run_dir, path))
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
