#!/usr/bin/env python3
"""One fully-connected layer on both runtimes, over the number of rows it multiplies.

    .venv/bin/python scripts/fc_rows.py [--rows 7,8,14,16,21,24,28,32] [--width 256]

A Transformer's linear layers multiply an [ℓ, d_m] activation by a constant weight: ℓ, the
context length, is the row count M of every one of them. This builds that one layer for each M
(an ONNX MatMul of [M, width] by [width, width], converted to TFLite through the export's own
onnx2tf path) and times ONNX Runtime and LiteRT interleaved, fp32, one thread. It shows how each
runtime's matrix kernel tiles M: LiteRT's XNNPACK multiplies rows in blocks of a fixed height on
a given CPU (7 with AVX-512), so its time rises in steps at multiples of that height and M = 16
costs as much as M = 21; ONNX Runtime's MLAS kernel has no such step there. That is why the
measured LiteRT / ONNX Runtime ratio of a whole model depends on ℓ (docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from payattn.export.tflite import convert
from payattn.runtime.runners import open_runner
from payattn.runtime.timing import run_interleaved


def fc_graph(rows: int, width: int, path: Path) -> None:
    """An ONNX graph of one [rows, width] x [width, width] MatMul with a constant weight."""
    weight = (np.random.default_rng(0).standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="7,8,14,16,21,24,28,32", help="row counts M (context lengths)")
    parser.add_argument("--width", type=int, default=256, help="d_m: the layer's input and output width")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    runners = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in rows:
            folder = Path(tmp) / f"m{m}"
            folder.mkdir()
            fc_graph(m, args.width, folder / "fc.onnx")
            tflite = convert(folder / "fc.onnx", folder, ["fp32"], None, name_prefix="fc")["fp32"]
            spec = [{"name": "x", "shape": [m, args.width], "dtype": "float32"}]
            runners += [open_runner("onnxruntime", folder / "fc.onnx", spec), open_runner("litert", tflite, spec)]
        samples = run_interleaved([r.run for r in runners], args.runs, args.min_seconds)
    print(f"| M (ℓ) | ONNX Runtime µs | LiteRT µs | LiteRT / ORT | ORT GFLOP/s | LiteRT GFLOP/s |")
    print("|--:|--:|--:|--:|--:|--:|")
    for i, m in enumerate(rows):
        ort, lite = (statistics.median(samples[2 * i + k]) * 1e3 for k in (0, 1))
        flops = 2 * m * args.width * args.width
        print(f"| {m} | {ort:.2f} | {lite:.2f} | {lite / ort:.2f} | {flops / ort / 1e3:.0f} | {flops / lite / 1e3:.0f} |")


if __name__ == "__main__":
    main()
