"""The onnx2tf road's graph edits, read back from a real fp32 export of a small random model:
LayerNorms written out (no batch-norm form), keep_num_dims on rank-2 FULLY_CONNECTEDs, and a
RESHAPE between each TRANSPOSE and the BATCH_MATMUL reading it. The last two change no output
bit: a file with them undone gives the same outputs before and after they are applied again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.tools import flatbuffer_utils

from payattn.config import resolve_config
from payattn.export.onnx_graph import export_onnx
from payattn.export.tflite import _keep_num_dims, _reshape_before_batch_matmul, convert
from payattn.models import build_model

OP = schema.BuiltinOperator
NAMES = {v: k for k, v in vars(OP).items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """mnist-tiny standard (four heads: the split's transposes), random weights, fp32."""
    out = tmp_path_factory.mktemp("tflite-graph")
    cfg = resolve_config("mnist-tiny", "standard")
    torch.manual_seed(0)
    export_onnx(build_model(cfg).eval(), cfg, out / "model.onnx")
    return convert(out / "model.onnx", out, ["fp32"], None)["fp32"].read_bytes()


def operators(data: bytes) -> tuple[Any, list[tuple[str, Any]]]:
    """The model object and its main graph's (operator name, operator) in order."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    return model, [(NAMES[codes[op.opcodeIndex]], op) for op in model.subgraphs[0].operators]


def producers(ops: list[tuple[str, Any]]) -> dict[int, str]:
    return {t: name for name, op in ops for t in op.outputs}


def loose_fully_connected(data: bytes) -> int:
    """Rank-2 FULLY_CONNECTEDs with keep_num_dims false."""
    model, ops = operators(data)
    tensors = model.subgraphs[0].tensors
    return sum(name == "FULLY_CONNECTED" and len(tensors[op.inputs[0]].shape) == 2
               and len(tensors[op.outputs[0]].shape) == 2 and not op.builtinOptions.keepNumDims
               for name, op in ops)


def transposed_products(data: bytes) -> int:
    """BATCH_MATMUL inputs that a TRANSPOSE writes directly."""
    _, ops = operators(data)
    made_by = producers(ops)
    return sum(made_by.get(t) == "TRANSPOSE" for name, op in ops if name == "BATCH_MATMUL" for t in op.inputs[:2])


def outputs(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def undone(data: bytes) -> bytes:
    """The file as the converter wrote it: keep_num_dims cleared on rank-2 FULLY_CONNECTEDs and
    each same-shape RESHAPE between a TRANSPOSE and a BATCH_MATMUL bypassed and dropped."""
    model, ops = operators(data)
    graph = model.subgraphs[0]
    made_by = producers(ops)
    readers = {t: [n for n, op in ops if t in op.inputs] for _, op in ops for t in op.outputs}
    bypass, kept = {}, []
    for name, op in ops:
        source, out = op.inputs[0], op.outputs[0]
        if (name == "RESHAPE" and made_by.get(source) == "TRANSPOSE" and readers[out] == ["BATCH_MATMUL"]
                and list(graph.tensors[source].shape) == list(graph.tensors[out].shape)):
            bypass[out] = source
            continue
        if name == "FULLY_CONNECTED" and len(graph.tensors[source].shape) == 2 == len(graph.tensors[out].shape):
            op.builtinOptions.keepNumDims = False
        op.inputs = [bypass.get(t, t) for t in op.inputs]
        kept.append(op)
    graph.operators = kept
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@pytest.mark.slow
def test_layer_norms_are_written_out(fp32: bytes) -> None:
    """(x - mean) * rsqrt(var + eps), its scale and shift in the next layer's weights; not
    Keras's batch-norm form x * (s*r) + (b - mean*s*r), which squares a difference and
    multiplies rsqrt by a constant."""
    _, ops = operators(fp32)
    made_by = producers(ops)
    names = [name for name, _ in ops]
    assert "SQUARED_DIFFERENCE" not in names and names.count("RSQRT") == 5  # 2 blocks × 2 + the last
    for name, op in ops:
        if name == "MUL" and any(made_by.get(t) == "RSQRT" for t in op.inputs):
            assert sorted(made_by.get(t, "constant") for t in op.inputs) == ["RSQRT", "SUB"]
    assert names.count("MUL") == 2 * 5  # squared and normalised: no scale is left in a MUL of its own


@pytest.mark.slow
def test_fully_connected_keep_their_rank(fp32: bytes) -> None:
    assert "FULLY_CONNECTED" in [name for name, _ in operators(fp32)[1]]
    assert loose_fully_connected(fp32) == 0
    assert loose_fully_connected(undone(fp32)) > 0


@pytest.mark.slow
def test_transposes_reach_products_through_a_reshape(fp32: bytes) -> None:
    assert transposed_products(fp32) == 0
    assert transposed_products(undone(fp32)) == 2 * 3  # q and k, then v, per block
    model, ops = operators(fp32)
    for name, op in ops:  # each new activation has an empty buffer of its own, not buffer 0
        if name == "RESHAPE" and op.outputs[0] in {t for n, o in ops if n == "BATCH_MATMUL" for t in o.inputs}:
            buffer = model.subgraphs[0].tensors[op.outputs[0]].buffer
            assert buffer != 0 and model.buffers[buffer].data is None


@pytest.mark.slow
def test_graph_edits_change_no_output_bit(fp32: bytes) -> None:
    before = undone(fp32)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    shape = Interpreter(model_content=before).get_input_details()[0]["shape"]
    samples = [xi[None].reshape(shape) for xi in x]
    for edited in (_keep_num_dims(before), _reshape_before_batch_matmul(before), fp32):
        assert edited != before
        for sample in samples:
            assert outputs(edited, sample).tobytes() == outputs(before, sample).tobytes()
