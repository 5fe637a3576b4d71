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
from payattn.runtime.lifetime import die_with_parent

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

    model = onnx2tf.convert(
        input_onnx_file_path=job["onnx"],
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
        tmp = Path(job["out_dir"]) / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, Path(job["out_dir"]) / name)
        files[precision] = name
    return {"files": files}


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
