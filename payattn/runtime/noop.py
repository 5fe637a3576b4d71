"""Do-nothing models, built with each runtime's own means on the device: the harness's own
per-call cost in a runtime (binding, input hand-over, output copy), timed as an artifact is.

A result line states it beside the model's latency, so a binding's overhead is never
mistaken for the model's time. Each model takes the artifact's inputs and hands the first
one back: an ONNX graph of Identity nodes (its protobuf written here, since a device has
ONNX Runtime but not the onnx package), a TFLite graph with no operator (built with the
flatbuffer schema ai-edge-litert ships; tflite-runtime ships none, so no figure there), and
an ExecuTorch program of one copy (built with ExecuTorch's own exporter, part of its package).
"""

from __future__ import annotations

import importlib
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from payattn.runtime.runners import Runner, make_inputs, open_runner
from payattn.runtime.timing import summarize, time_call

WARMUP_CALLS, CALLS = 20, 300  # a few hundred calls: well under a second in every runtime
_ONNX_TYPES = {"float32": 1, "int32": 6, "int64": 7, "float16": 10}
_TFLITE_TYPES = {"float32": 0, "float16": 1, "int32": 2, "int64": 4}
SUFFIXES = {"onnxruntime": ".onnx", "litert": ".tflite", "executorch": ".pte"}


def harness_ms(runtime: str, specs: Sequence[dict[str, Any]], threads: int) -> dict[str, float] | None:
    """{p50, mean} ms of one call of a do-nothing model with inputs `specs` in `runtime`;
    None where this runtime cannot build one here."""
    model = noop_model(runtime, specs)
    if model is None:
        return None
    runner = _open(runtime, model, specs, threads)
    for _ in range(WARMUP_CALLS):
        runner.run()
    stats = summarize([time_call(runner.run) / 1e6 for _ in range(CALLS)])
    return {"p50": stats["p50"], "mean": stats["mean"]}


def _open(runtime: str, model: bytes, specs: Sequence[dict[str, Any]], threads: int) -> Runner:
    """A runner on `model`, loaded from a file that is gone once loaded (runtimes map or copy it)."""
    with tempfile.TemporaryDirectory(prefix="payattn-noop-") as folder:
        path = Path(folder) / f"noop{SUFFIXES[runtime]}"
        path.write_bytes(model)
        return open_runner(runtime, path, specs, threads)


def noop_model(runtime: str, specs: Sequence[dict[str, Any]]) -> bytes | None:
    """The do-nothing model's file contents for `runtime`, or None where it cannot be built."""
    builders = {"onnxruntime": onnx_identity, "litert": tflite_identity, "executorch": pte_identity}
    return builders[runtime](specs)


def onnx_identity(specs: Sequence[dict[str, Any]]) -> bytes:
    """An ONNX model (IR 8, opset 13): every input through an Identity node to an output."""
    def value_info(name: str, spec: dict[str, Any]) -> bytes:
        dims = b"".join(_message(1, _varint_field(1, d)) for d in spec["shape"])
        tensor = _varint_field(1, _ONNX_TYPES[spec["dtype"]]) + _message(2, dims)
        return _message(1, name.encode()) + _message(2, _message(1, tensor))

    names = [spec["name"] for spec in specs]
    nodes = b"".join(_message(1, _message(1, n.encode()) + _message(2, f"{n}_out".encode()) + _message(4, b"Identity"))
                     for n in names)
    graph = (nodes + _message(2, b"noop") + b"".join(_message(11, value_info(n, s)) for n, s in zip(names, specs))
             + b"".join(_message(12, value_info(f"{n}_out", s)) for n, s in zip(names, specs)))
    return _varint_field(1, 8) + _message(7, graph) + _message(8, _varint_field(2, 13))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def tflite_identity(specs: Sequence[dict[str, Any]]) -> bytes | None:
    """A TFLite model with no operator, its outputs its inputs; None without the schema module."""
    try:
        import flatbuffers

        schema = importlib.import_module("ai_edge_litert.schema_py_generated")
    except ImportError:
        return None
    graph = schema.SubGraphT()
    graph.tensors = []
    for spec in specs:
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = spec["name"], list(spec["shape"]), \
            _TFLITE_TYPES[spec["dtype"]], 0
        graph.tensors.append(tensor)
    graph.inputs = graph.outputs = list(range(len(specs)))
    graph.operators = []
    model = schema.ModelT()
    model.version, model.subgraphs, model.buffers, model.operatorCodes = 3, [graph], [schema.BufferT()], []
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def pte_identity(specs: Sequence[dict[str, Any]]) -> bytes:
    """An ExecuTorch program copying its first input out (a .pte may not return an input as it is)."""
    import torch
    from executorch.exir import to_edge

    class Copy(torch.nn.Module):
        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return inputs[0].clone()

    arrays = make_inputs(specs)
    example = tuple(torch.from_numpy(arrays[spec["name"]]) for spec in specs)
    with warnings.catch_warnings():  # the exporter's own deprecation notices
        warnings.simplefilter("ignore", FutureWarning)
        return to_edge(torch.export.export(Copy(), example)).to_executorch().buffer
