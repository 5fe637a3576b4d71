"""Tiny real artifact dirs (ONNX + TFLite, vision + text) with contract manifests, for the
runtime and bench tests. Built once per test process: ONNX by hand with onnx.helper, TFLite
with TensorFlow's converter."""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

VOCAB = 20


def write_manifest(directory: Path, mechanism: str, kind: str, inputs: dict[str, list[dict]]) -> None:
    """A payattn.manifest/1 document for the files in `inputs` (file name -> input spec)."""
    artifacts = []
    for file, spec in inputs.items():
        data = (directory / file).read_bytes()
        fmt = "onnx" if file.endswith(".onnx") else "tflite"
        artifacts.append({
            "file": file, "format": fmt, "precision": "fp32", "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "operators": [], "operator_count": 0, "operator_counts": {},
            "inputs": spec, "outputs": [{"name": "logits", "shape": [1, 5], "dtype": "float32"}],
            "parity": {"max_abs_diff": 0.0, "top1_agreement": 1.0, "samples": 1}, "test_accuracy": 0.5})
    manifest = {"schema": "payattn.manifest/1", "payattn_version": "0.1.0", "created": "2025-01-01T00:00:00Z",
                "mechanism": mechanism, "task": f"tiny-{kind}", "preset": "tiny", "kind": kind, "config": {},
                "params": 245, "attention_params": 0, "flops": 490, "attention_flops": 0,
                "labels": ["a", "b", "c", "d", "e"], "preprocessing": {}, "artifacts": artifacts,
                "verification": {"random_inputs": 1, "test_samples": 0, "test_split_size": 0,
                                 "pytorch_test_accuracy": None, "logit_scale": 1.0, "max_abs_diff": {},
                                 "min_top1_agreement": {}, "calibration_samples": 0},
                "versions": {}, "export_seconds": 0.0}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))


def onnx_model(path: Path, kind: str, width: int = 48, classes: int = 5) -> None:
    """vision: pixels float32 [1,3,4,4] (NCHW) -> logits; text: tokens int32 [1,8] -> logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    if kind == "vision":
        x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, 4, 4])
        nodes = [helper.make_node("Flatten", ["pixels"], ["flat"])]
        width = 48
    else:
        x = helper.make_tensor_value_info("tokens", TensorProto.INT32, [1, 8])
        nodes = [helper.make_node("Gather", ["embedding", "tokens"], ["embedded"]),
                 helper.make_node("ReduceMean", ["embedded"], ["flat"], axes=[1], keepdims=0)]
    weights = {"embedding": rng.standard_normal((VOCAB, width)), "w": rng.standard_normal((width, classes)),
               "b": np.zeros(classes)}
    nodes += [helper.make_node("MatMul", ["flat", "w"], ["product"]),
              helper.make_node("Add", ["product", "b"], ["logits"])]
    used = {name for node in nodes for name in node.input}
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])
    graph = helper.make_graph(
        nodes, f"tiny_{kind}", [x], [y],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items() if k in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def tflite_model(path: Path, kind: str) -> None:
    """vision: pixels float32 [1,4,4,3] (NHWC), with a signature; text: tokens int32 [1,8], without."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    rng = np.random.default_rng(2)

    class Vision(tf.Module):
        w = tf.constant(rng.standard_normal((48, 5)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.float32, name="pixels")])
        def __call__(self, pixels):
            return {"logits": tf.matmul(tf.reshape(pixels, [1, 48]), self.w)}

    embedding = tf.constant(rng.standard_normal((VOCAB, 6)).astype(np.float32))
    w = tf.constant(rng.standard_normal((6, 5)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.int32, name="tokens")])
    def text(tokens):
        return tf.matmul(tf.reduce_mean(tf.gather(embedding, tokens), axis=1), w)

    if kind == "vision":
        module = Vision()
        function = module.__call__.get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    else:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([text.get_concrete_function()], text)
    path.write_bytes(converter.convert())


VISION_INPUTS = {
    "model.onnx": [{"name": "pixels", "shape": [1, 3, 4, 4], "dtype": "float32", "layout": "NCHW"}],
    "model_fp32.tflite": [{"name": "pixels", "shape": [1, 4, 4, 3], "dtype": "float32", "layout": "NHWC"}],
}
TEXT_INPUTS = {name: [{"name": "tokens", "shape": [1, 8], "dtype": "int32", "layout": "tokens", "low": 0,
                       "high": VOCAB}] for name in ("model.onnx", "model_fp32.tflite")}


@functools.cache
def _built() -> dict[str, Path]:
    root = Path(tempfile.mkdtemp(prefix="payattn-tiny-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    dirs = {}
    for kind, inputs in (("vision", VISION_INPUTS), ("text", TEXT_INPUTS)):
        directory = root / kind
        directory.mkdir()
        onnx_model(directory / "model.onnx", kind)
        tflite_model(directory / "model_fp32.tflite", kind)
        write_manifest(directory, "standard" if kind == "vision" else "efficient", kind, inputs)
        dirs[kind] = directory
    return dirs


def copy_artifact_dirs(destination: Path) -> dict[str, Path]:
    """Fresh copies of the tiny artifact dirs under `destination`, safe to damage in a test."""
    return {kind: Path(shutil.copytree(source, destination / kind)) for kind, source in _built().items()}
