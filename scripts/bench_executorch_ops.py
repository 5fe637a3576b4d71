#!/usr/bin/env python3
"""Where ExecuTorch's time goes beside LiteRT's, operator by operator, for the same model.

    .venv/bin/python scripts/bench_executorch_ops.py [--out roads-out] [--presets mnist-tiny,mnist-wide]
                                                     [--repeats 3] [--epochs 1]

For each preset and mechanism (trained and exported as scripts/bench_roads.py does, sharing its
--out folder) this takes payattn's fp32 .pte (ExecuTorch, the whole graph in one XNNPACK
delegate) and onnx2tf's fp32 .tflite (LiteRT, XNNPACK delegate), both at one thread, and prints:

- p50 of one call of each, timed interleaved (payattn.runtime.timing) with each runtime's
  do-nothing model of the same input (payattn.runtime.noop): that one is the fixed cost of a
  call through the Python binding, the rest is the model;
- ExecuTorch's own profile (ETDump: `_load_for_executorch(..., enable_etdump=True)`, read with
  executorch.devtools.Inspector): Method::execute, the XNNPACK delegate call, and each XNNPACK
  operator's time as XNNPACK's profiler reports it, in whole microseconds (an operator under
  1 µs reads 0, so the operators' sum falls short of the delegate call by up to 1 µs each);
  medians over the calls, as one preempted call would swamp a mean;
- LiteRT's per-operator time, which its Python API does not report: each operator of the
  .tflite is cut out into a model of its own (its constant inputs kept, the others made model
  inputs) and timed alone in LiteRT, interleaved, less LiteRT's do-nothing model.

Operators are grouped by what they do (matrix products, softmax, element-wise and reductions,
layout moves), with each group's operator count, since every operator has its own dispatch
cost. Compare ratios within one run; the machine may be busy (--repeats passes, medians).
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench_roads import TASK_OF_KIND
from payattn.config import get_preset
from payattn.errors import PayattnError
from payattn.export import PartialExport, export
from payattn.export.manifest import Manifest
from payattn.mechanisms import MECHANISMS
from payattn.pipeline import ensure_run
from payattn.runtime.noop import noop_model
from payattn.runtime.runners import open_runner, quiet_native_stderr
from payattn.runtime.timing import run_interleaved

FILES = {"executorch": "model_fp32.pte", "litert": "model_fp32.tflite"}
PROFILE_RUNS, SKIP = 400, 100  # ETDump calls, and how many of the first are left out as warm-up
# What an operator does, by its name in XNNPACK's profile (ExecuTorch) or TFLite's schema (LiteRT).
GROUPS = {
    "matrix products": r"fully connected|batch matrix|convolution|^fully_connected|^batch_matmul|conv_2d",
    "softmax": r"softmax",
    "layout (reshape, transpose, copy)": r"reshape|transpose|copy|concat|slice|squeeze|expand",
    "element-wise and reductions": r".",
}


def group_of(name: str) -> str:
    return next(g for g, pattern in GROUPS.items() if re.search(pattern, name.lower()))


@dataclass
class Profile:
    """One runtime's operators of one model: per group, operator count and summed µs."""

    count: collections.Counter = field(default_factory=collections.Counter)
    micros: collections.Counter = field(default_factory=collections.Counter)
    zero: collections.Counter = field(default_factory=collections.Counter)  # operators that read 0 µs
    extra: dict[str, float] = field(default_factory=dict)  # whole-call figures from the profile

    def add(self, name: str, us: float) -> None:
        self.count[group_of(name)] += 1
        self.micros[group_of(name)] += us
        self.zero[group_of(name)] += us == 0


def inputs_of(path: Path) -> list[dict[str, Any]]:
    """The input spec the manifest gives this file (a .tflite takes NHWC, a .pte NCHW)."""
    return next(a for a in Manifest.load(path.parent).artifacts if a["file"] == path.name)["inputs"]


def build(run_dir: Path, art_dir: Path) -> None:
    """The .pte and onnx2tf's .tflite of the run's model in `art_dir`, made unless there already."""
    if not all((art_dir / f).is_file() for f in FILES.values()):
        try:
            export(run_dir, art_dir, ["fp32"], force=True, converters="onnx2tf,executorch")
        except PartialExport as exc:
            print(f"note: {exc}", file=sys.stderr)


def etdump_profile(path: Path, x: Any) -> Profile:
    """ExecuTorch's own profile of PROFILE_RUNS calls at one thread, per XNNPACK operator."""
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    with quiet_native_stderr(re.compile(r"\[(cpuinfo_utils|threadpool)\.cpp:\d+\] ")):
        portable_lib._unsafe_reset_threadpool(1)
        module = portable_lib._load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    for _ in range(PROFILE_RUNS):
        module.forward((x,))
    profile = Profile()
    with tempfile.TemporaryDirectory(prefix="payattn-etdump-") as folder:
        dump = Path(folder) / "run.etdp"
        module.write_etdump_result_to_file(str(dump))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inspector = Inspector(etdump_path=str(dump))
    for block in (b for b in inspector.event_blocks if b.name == "Execute"):
        for event in (e for e in block.events if e.perf_data is not None):
            runs = event.perf_data.raw[SKIP:]
            if event.is_delegated_op:
                profile.add(re.sub(r" #\d+$", "", event.name), statistics.median(runs) * 1e3)
            else:
                profile.extra[event.name] = statistics.median(runs) * 1e3
    return profile


def single_op_models(path: Path) -> list[tuple[str, bytes]]:
    """Each operator of a .tflite as a model of its own: (its builtin name, the model's bytes)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    data = [b.data for b in model.buffers]
    constant = [graph.tensors[t].buffer > 0 and data[graph.tensors[t].buffer] is not None
                and len(data[graph.tensors[t].buffer]) > 0 for t in range(len(graph.tensors))]
    model.signatureDefs, model.metadata, model.metadataBuffer = [], [], []
    operators, out = list(graph.operators), []
    for op in operators:
        code = model.operatorCodes[op.opcodeIndex]
        used = {graph.tensors[t].buffer for t in op.inputs if t >= 0}
        for i, buffer in enumerate(model.buffers):  # only this operator's weights are packed
            buffer.data = data[i] if i in used else None
        graph.operators = [op]
        graph.inputs = [t for t in op.inputs if t >= 0 and not constant[t]]
        graph.outputs = list(op.outputs)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        out.append((names[max(code.builtinCode, code.deprecatedBuiltinCode)], bytes(builder.Output())))
    return out


def litert_interpreter(content: bytes) -> Any:
    """A LiteRT interpreter at one thread on `content`, its inputs filled with seeded values."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_stderr():
        interpreter = Interpreter(model_content=content, num_threads=1)
        interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal(detail["shape"]).astype(detail["dtype"]))
    return interpreter


def litert_profile(path: Path, repeats: int) -> Profile:
    """Each operator of the .tflite timed alone in LiteRT (p50 less the do-nothing model's)."""
    ops = single_op_models(path)
    interpreters = [litert_interpreter(content) for _, content in ops]
    noop = litert_interpreter(noop_model("litert", inputs_of(path)))
    p50s = [[] for _ in range(len(ops) + 1)]
    for _ in range(repeats):
        samples = run_interleaved([i.invoke for i in interpreters] + [noop.invoke], 200, 0.2)
        for cell, s in zip(p50s, samples):
            cell.append(statistics.median(s) * 1e3)
    p50 = [statistics.median(c) for c in p50s]
    profile = Profile(extra={"do-nothing model": p50[-1]})
    for (name, _), us in zip(ops, p50):
        profile.add(name, max(us - p50[-1], 0.0))
    return profile


def whole_calls(pte: Path, tflite: Path, repeats: int) -> dict[str, float]:
    """p50 µs of one call: each model and each runtime's do-nothing model, interleaved."""
    with tempfile.TemporaryDirectory(prefix="payattn-noop-") as folder:
        runners = {"executorch": open_runner("executorch", pte, inputs_of(pte), 1),
                   "litert": open_runner("litert", tflite, inputs_of(tflite), 1)}
        for runtime, path in (("executorch", pte), ("litert", tflite)):
            noop = Path(folder) / f"noop{path.suffix}"
            noop.write_bytes(noop_model(runtime, inputs_of(path)))
            runners[f"{runtime} do-nothing"] = open_runner(runtime, noop, inputs_of(path), 1)
        p50s = collections.defaultdict(list)
        for _ in range(repeats):
            for name, s in zip(runners, run_interleaved([r.run for r in runners.values()], 300, 1.0)):
                p50s[name].append(statistics.median(s) * 1e3)
    return {name: statistics.median(v) for name, v in p50s.items()}


def report(preset: str, mech: str, calls: dict[str, float], et: Profile, lite: Profile) -> None:
    et_model, lite_model = calls["executorch"], calls["litert"]
    print(f"\n### {preset} {mech}: ExecuTorch {et_model:.1f} µs, LiteRT {lite_model:.1f} µs, "
          f"ratio {et_model / lite_model:.2f}\n")
    print("| | ExecuTorch ops (reading 0 µs) | ExecuTorch µs (ETDump) | LiteRT ops | LiteRT µs (each op alone) |")
    print("|---|--:|--:|--:|--:|")
    for group in GROUPS:
        print(f"| {group} | {et.count[group]} ({et.zero[group]}) | {et.micros[group]:.1f} | {lite.count[group]} | "
              f"{lite.micros[group]:.1f} |")
    print(f"| **all operators** | {sum(et.count.values())} ({sum(et.zero.values())}) | {sum(et.micros.values()):.1f} | "
          f"{sum(lite.count.values())} | {sum(lite.micros.values()):.1f} |")
    print(f"| XNNPACK delegate call (ETDump) | | {et.extra.get('DELEGATE_CALL', 0):.1f} | | |")
    print(f"| Method::execute (ETDump) | | {et.extra.get('Method::execute', 0):.1f} | | |")
    print(f"| one call, p50 (interleaved) | | {et_model:.1f} | | {lite_model:.1f} |")
    print(f"| do-nothing model, p50: the binding's fixed cost | | {calls['executorch do-nothing']:.1f} | | "
          f"{calls['litert do-nothing']:.1f} |")
    print(f"| one call less the fixed cost | | {et_model - calls['executorch do-nothing']:.1f} | | "
          f"{lite_model - calls['litert do-nothing']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("roads-out"))
    parser.add_argument("--presets", default="mnist-tiny,mnist-wide")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (fp32 latency ignores the weights)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved passes; each figure is their median")
    args = parser.parse_args()
    import torch

    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        try:
            task = TASK_OF_KIND[get_preset(preset).kind]
        except PayattnError as exc:
            sys.exit(str(exc))
        for mech in MECHANISMS:
            run_dir, _ = ensure_run(task, mech, args.out / "runs" / preset, preset=preset, epochs=args.epochs)
            art_dir = args.out / "artifacts" / preset / mech
            build(run_dir, art_dir)
            pte, tflite = art_dir / FILES["executorch"], art_dir / FILES["litert"]
            spec = inputs_of(pte)[0]
            calls = whole_calls(pte, tflite, args.repeats)
            x = torch.from_numpy(np.random.default_rng(0).standard_normal(spec["shape"]).astype(np.float32))
            report(preset, mech, calls, etdump_profile(pte, x), litert_profile(tflite, args.repeats))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
