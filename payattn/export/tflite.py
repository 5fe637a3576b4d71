"""ONNX -> TFLite (fp32, fp16, dynamic-int8, int8) through onnx2tf, in a child process.

onnx2tf rebuilds the ONNX graph as a Keras model; the TFLite converter then writes one
flatbuffer per precision. This runs in a child Python process: TensorFlow's import, memory
and log noise stay out of the caller, and any crash becomes one clean error here. The child
runs this file as a script, so it imports neither torch nor the rest of payattn.export.

Select TF ops are allowed during conversion on purpose: a graph that needs one then converts
into a file whose Flex operator `payattn.export.ops.require_builtin` names, instead of an
opaque converter failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from payattn.data import subset
from payattn.errors import PayattnError
from payattn.runtime.lifetime import die_with_parent, quiet_fork

TFLITE_FILES = {
    "fp32": "model_fp32.tflite",
    "fp16": "model_fp16.tflite",
    "dynamic-int8": "model_dynamic_int8.tflite",
    "int8": "model_int8.tflite",
}
# The operators full int8 quantises (see _int8); every other one stays float32.
INT8_OPERATORS = ("FULLY_CONNECTED",)
CALIBRATION_SAMPLES = 200  # training samples that set the int8 activation ranges
# Lines of the child's output quoted in an error: enough to show onnx2tf's own diagnosis.
_ERROR_TAIL_LINES = 15


def calibration_inputs(train_x: np.ndarray, n: int = CALIBRATION_SAMPLES) -> np.ndarray:
    """A seeded spread of `n` training inputs: what sets full int8's activation ranges."""
    return train_x[subset(len(train_x), n, seed=1)]


# onnx2tf runs a check inference on every model whose inputs are all [N, H, W, 3] images,
# and reads its images from this file in the working directory, downloading it when missing.
# The child runs in its own work dir, where this file holds the task's own training images.
ONNX2TF_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_SAMPLES = 20


def convert(
    onnx_path: Path, out_dir: Path, precisions: list[str], calibration: np.ndarray | None,
    name_prefix: str = "model",
) -> dict[str, Path]:
    """Write one .tflite per precision into `out_dir`; return precision -> path.

    `calibration`: real training inputs in the ONNX model's layout, batch axis first. "int8"
    needs them (its activation ranges come from them); for images, the first ones also stand
    in for onnx2tf's downloaded sample images, so conversion never reaches for the network.
    Files are named `{name_prefix}_{precision}.tflite`.
    """
    if "int8" in precisions and (calibration is None or not len(calibration)):
        raise PayattnError("int8 export needs calibration samples from the training split")
    work = out_dir / f".tflite-work-{name_prefix}"
    work.mkdir()
    job: dict[str, Any] = {
        "onnx": str(onnx_path), "out_dir": str(out_dir), "work": str(work),
        "precisions": list(precisions), "calibration": None, "prefix": name_prefix,
    }
    if calibration is not None and len(calibration):
        np.save(work / "calibration.npy", calibration)
        job["calibration"] = str(work / "calibration.npy")
        if calibration.ndim == 4:
            nhwc = calibration[:ONNX2TF_SAMPLES].transpose(0, 2, 3, 1)
            np.save(work / ONNX2TF_SAMPLE_FILE, np.ascontiguousarray(nhwc, dtype=np.float32))
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job))
    package_root = str(Path(__file__).resolve().parents[2])  # where `import payattn` resolves
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1",
               CUDA_VISIBLE_DEVICES="-1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    # -P: this file's own folder stays off sys.path, so ops.py or verify.py shadow nothing.
    with quiet_fork():
        proc = subprocess.run(
            [sys.executable, "-P", str(Path(__file__).resolve()), str(job_path)],
            capture_output=True, text=True, env=env, cwd=work, preexec_fn=die_with_parent,
        )
    result = _read_result(work / "result.json")
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0 or "files" not in result:
        detail = result.get("error") or _tail(proc.stderr + proc.stdout)
        raise PayattnError(f"onnx2tf/TFLite conversion of {onnx_path.name} failed: {detail}")
    return {precision: out_dir / name for precision, name in result["files"].items()}


def _read_result(path: Path) -> dict[str, Any]:
    """The child's result.json; none or a cut-off one (a full disk) means it failed."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def _tail(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # onnx2tf colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-_ERROR_TAIL_LINES:]) or "the converter exited without a message"


# ---- child process -------------------------------------------------------------------------


def _child(job: dict[str, Any]) -> dict[str, Any]:
    """Build the Keras model with onnx2tf, then convert it once per requested precision."""
    import onnx2tf  # sets TensorFlow's logging before importing it
    import tensorflow as tf

    onnx_path = Path(job["work"]) / "for_onnx2tf.onnx"
    onnx_path.write_bytes(_unfused_layer_norms(Path(job["onnx"]).read_bytes()))
    model = onnx2tf.convert(
        input_onnx_file_path=str(onnx_path),
        output_folder_path=str(Path(job["work"]) / "saved_model"),
        not_use_onnxsim=True,  # payattn already simplified the graph with onnxslim
        disable_model_save=True,  # only the in-memory Keras model is needed
        replace_to_pseudo_operators=["erf"],  # exact GELU would otherwise need FlexErf
        verbosity="error",
    )
    if model is None:
        raise RuntimeError("onnx2tf returned no model")
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
    concrete = tf.function(lambda *xs: model(xs), input_signature=specs).get_concrete_function()

    calibration = None
    if "int8" in job["precisions"]:
        calibration = _to_model_layout(np.load(job["calibration"]), tuple(specs[0].shape))
    files = {}
    fp32: bytes | None = None  # converted before int8 (canonical order), it spares _int8 one conversion
    for precision in job["precisions"]:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS,
        ]
        if precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "dynamic-int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        name = TFLITE_FILES[precision].replace("model", job["prefix"], 1)
        data = _int8(tf, converter, calibration, fp32) if precision == "int8" else converter.convert()
        if precision == "fp32":
            fp32 = data
        data = _reshape_before_batch_matmul(_keep_num_dims(data))
        tmp = Path(job["out_dir"]) / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, Path(job["out_dir"]) / name)
        files[precision] = name
    return {"files": files}


def _unfused_layer_norms(onnx_bytes: bytes) -> bytes:
    """The ONNX graph with every LayerNormalization written out as (x - mean) * rsqrt(var + eps),
    its scale and shift folded into the Gemms that read it when only Gemms with constant weights
    do (W (n*s + b) + c = (W*s) n + (W b + c)); elsewhere a Mul and an Add after it.

    onnx2tf turns LayerNormalization into Keras's batch-norm form, x * (s*r) + (b - mean*s*r),
    which costs five [ℓ, d_m] element-wise operators (two of them broadcasts of [ℓ, 1] by [d_m])
    and leaves no trailing constant Mul/Add that the converter could fold into the next layer.
    Written out and folded, a LayerNorm before a linear layer costs three, as litert-torch's does.
    Full int8 is built from this graph too: the folded weights cost it a little top-1 agreement
    (mnist-tiny standard: 99.4% to 98.8%), but building it from the graph as exported took a
    second onnx2tf model, and its file came out more than 45% of the smaller fp32 file's size.
    """
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}  # a graph output must keep its value: no folding
    nodes, added = [], []
    for node in graph.node:
        if _plain_layer_norm(node, weights):
            users = [] if node.output[0] in outputs else readers.get(node.output[0], [])
            nodes += _written_out(node, weights, users, added)
        else:
            nodes.append(node)
    graph.initializer.extend(added)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _plain_layer_norm(node: Any, weights: dict[str, Any]) -> bool:
    """A LayerNormalization with constant scale (and shift) and one output: mean and inverse
    std-dev outputs would need the fused node."""
    return (node.op_type == "LayerNormalization" and len(node.output) == 1
            and node.input[1] in weights
            and (len(node.input) < 3 or not node.input[2] or node.input[2] in weights))


def _foldable(node: Any, weights: dict[str, Any]) -> bool:
    """A Gemm y = n W^T + c with constant W and c: a LayerNorm's scale and shift fold into it."""
    return (node.op_type == "Gemm" and len(node.input) == 3 and node.input[1] in weights
            and node.input[2] in weights and _attributes(node) == {"alpha": 1.0, "beta": 1.0, "transB": 1})


def _written_out(node: Any, weights: dict[str, Any], users: list[Any], added: list[Any]) -> list[Any]:
    """The nodes that replace one LayerNormalization; its new constants go to `added`, and
    `users` (the Gemms reading it) take folded weights when they all can."""
    from onnx import helper, numpy_helper

    attrs = _attributes(node)
    x, out, axis = node.input[0], node.output[0], attrs.get("axis", -1)
    scale = numpy_helper.to_array(weights[node.input[1]]).astype(np.float64)
    shift = (numpy_helper.to_array(weights[node.input[2]]).astype(np.float64)
             if len(node.input) > 2 and node.input[2] else np.zeros_like(scale))
    fold = axis == -1 and scale.ndim == 1 and bool(users) and all(_foldable(u, weights) for u in users)
    name = (node.name or out) + "/"
    added += [numpy_helper.from_array(np.array([axis], np.int64), name + "axes"),
              numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), name + "eps"),
              numpy_helper.from_array(np.array(1.0, np.float32), name + "one")]
    normed = out if fold else name + "normed"
    nodes = [
        helper.make_node("ReduceMean", [x, name + "axes"], [name + "mean"], keepdims=1),
        helper.make_node("Sub", [x, name + "mean"], [name + "centred"]),
        helper.make_node("Mul", [name + "centred", name + "centred"], [name + "squared"]),
        helper.make_node("ReduceMean", [name + "squared", name + "axes"], [name + "var"], keepdims=1),
        helper.make_node("Add", [name + "var", name + "eps"], [name + "var_eps"]),
        helper.make_node("Sqrt", [name + "var_eps"], [name + "std"]),
        helper.make_node("Div", [name + "one", name + "std"], [name + "rstd"]),  # RSQRT in TFLite
        helper.make_node("Mul", [name + "centred", name + "rstd"], [normed]),
    ]
    if fold:
        for k, user in enumerate(users):
            w = numpy_helper.to_array(weights[user.input[1]]).astype(np.float64)
            c = numpy_helper.to_array(weights[user.input[2]]).astype(np.float64)
            added += [numpy_helper.from_array((w * scale).astype(np.float32), f"{name}w{k}"),
                      numpy_helper.from_array((c + w @ shift).astype(np.float32), f"{name}b{k}")]
            user.input[1], user.input[2] = f"{name}w{k}", f"{name}b{k}"
        return nodes
    added += [numpy_helper.from_array(scale.astype(np.float32), name + "scale"),
              numpy_helper.from_array(shift.astype(np.float32), name + "shift")]
    return nodes + [helper.make_node("Mul", [normed, name + "scale"], [name + "scaled"]),
                    helper.make_node("Add", [name + "scaled", name + "shift"], [out])]


def _keep_num_dims(data: bytes) -> bytes:
    """The .tflite with keep_num_dims set on every FULLY_CONNECTED whose input and output are
    rank 2 (where it changes no shape). The converter leaves it false there; LiteRT's XNNPACK
    delegate then runs each such layer about 0.1 µs slower (4% of a [16, 64] x [64, 64] layer)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    changed = False
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if (max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.FULLY_CONNECTED
                    and len(graph.tensors[op.inputs[0]].shape) == 2 and len(graph.tensors[op.outputs[0]].shape) == 2
                    and not op.builtinOptions.keepNumDims):
                op.builtinOptions.keepNumDims = changed = True
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else data


def _reshape_before_batch_matmul(data: bytes) -> bytes:
    """The .tflite with a RESHAPE to the same shape between every TRANSPOSE and the
    BATCH_MATMUL that reads it (the heads' split). LiteRT's XNNPACK delegate otherwise fuses the
    transpose into the product, which is slower at these shapes: 8.6 against 7.8 µs for one
    mnist-tiny attention core (ℓ = 16, h = 4, d_k = 16); the reshape stops the fusion and
    costs nothing itself. litert-torch's graphs have such reshapes (to rank 3) by construction."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    op = schema.BuiltinOperator
    if op.BATCH_MATMUL not in codes or op.TRANSPOSE not in codes:
        return data
    if op.RESHAPE not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = op.RESHAPE
        code.version = 1
        model.operatorCodes.append(code)
        codes.append(op.RESHAPE)
    for graph in model.subgraphs:
        transposed = {t for o in graph.operators if codes[o.opcodeIndex] == op.TRANSPOSE for t in o.outputs}
        operators = []
        for o in graph.operators:
            if codes[o.opcodeIndex] == op.BATCH_MATMUL:
                for slot, source in enumerate(o.inputs[:2]):
                    if source in transposed:
                        operators.append(_same_shape_reshape(model, graph, source, codes.index(op.RESHAPE)))
                        o.inputs[slot] = operators[-1].outputs[0]
            operators.append(o)
        graph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _same_shape_reshape(model: Any, graph: Any, source: int, opcode: int) -> Any:
    """A RESHAPE of tensor `source` to its own shape, its new tensors added to `graph`. Each new
    tensor gets a buffer of its own: the shape's holds the shape, the copy's stays empty (an
    activation), so nothing relies on which buffer the converter happened to leave empty."""
    from ai_edge_litert import schema_py_generated as schema

    tensor = graph.tensors[source]
    name = tensor.name or b"bmm_input"
    shape = schema.TensorT()
    shape.shape, shape.type, shape.name = [len(tensor.shape)], schema.TensorType.INT32, name + b"/shape"
    copy = schema.TensorT()
    copy.shape, copy.type, copy.name = list(tensor.shape), tensor.type, name + b"/reshaped"
    for new, contents in ((shape, np.asarray(tensor.shape, np.int32).view(np.uint8)), (copy, None)):
        buffer = schema.BufferT()
        buffer.data = contents
        model.buffers.append(buffer)
        new.buffer = len(model.buffers) - 1
    graph.tensors += [shape, copy]
    node = schema.OperatorT()
    node.opcodeIndex = opcode
    node.inputs, node.outputs = [source, len(graph.tensors) - 2], [len(graph.tensors) - 1]
    node.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    node.builtinOptions = schema.ReshapeOptionsT()
    node.builtinOptions.newShape = [int(d) for d in tensor.shape]
    return node


def _int8(tf: Any, converter: Any, calibration: np.ndarray, fp32: bytes | None = None) -> bytes:
    """Static int8 for the fully-connected layers inside the network: float everywhere else.

    Weights and activations of every fully-connected layer but the classifier are int8 with
    ranges calibrated on `calibration`; the rest stays float32 between QUANTIZE/DEQUANTIZE
    pairs. Fully quantised, LayerNorm, softmax, GELU and the attention products ran on
    TFLite's reference int8 kernels outside XNNPACK (it has no int8 softmax, GELU, rsqrt or
    activation × activation product): 1.5× slower than fp32 at mnist-wide. Three more stay
    float for accuracy: the patch embedding, whose int8 output error rides the residual stream
    through every block; the classifier, whose int8 output rounds the logits themselves (top-1
    agreement with PyTorch at mnist-wide: 98.8% with both in int8, 99.6% without); and a text
    model's token embedding, whose one int8 scale for the whole table (GATHER has no per-row
    scales) cost three of the four movie-reviews models 0.2-0.5 points of agreement (super:
    99.4% against 99.9%), though it made the file about four times smaller. Inputs and outputs
    stay float32 (or int32 token ids): the app feeds the same tensors to every precision.
    `fp32` is the float model `converter` makes unoptimised, when already converted: it names
    the classifier's output tensor; without it, one float conversion here does.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    float_model = fp32 if fp32 is not None else converter.convert()
    logits = Interpreter(model_content=float_model).get_output_details()[0]["name"]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    builtins = [name for name in vars(schema.BuiltinOperator) if not name.startswith("_")]
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_ops=[name for name in builtins if name not in INT8_OPERATORS],
        denylisted_nodes=[logits])
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([x[None]] for x in calibration[:1]),
        debug_options=options)
    return debugger.get_nondebug_quantized_model()


def _to_model_layout(samples: np.ndarray, model_shape: tuple[int, ...]) -> np.ndarray:
    """Calibration samples come in ONNX layout (NCHW images); onnx2tf's input may be NHWC."""
    if samples.ndim == 4 and tuple(samples.shape[1:]) != tuple(model_shape[1:]):
        samples = samples.transpose(0, 2, 3, 1)
    if tuple(samples.shape[1:]) != tuple(model_shape[1:]):
        raise RuntimeError(
            f"calibration samples {list(samples.shape[1:])} do not fit the converted input "
            f"{list(model_shape)}"
        )
    return np.ascontiguousarray(samples)


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    result_path = Path(job["work"]) / "result.json"
    try:
        result = _child(job)
    except Exception as exc:  # every failure is reported to the parent as one message
        message = f"{type(exc).__name__}: {exc}".strip()
        result = {"error": " ".join(message.split())[:2000]}
    result_path.write_text(json.dumps(result))
    return 0 if "files" in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
