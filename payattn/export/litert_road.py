"""PyTorch -> TFLite through Google's litert-torch (torch.export, then LiteRT's converter), the
reduced precisions through AI Edge Quantizer.

The model converts as PyTorch runs it, NCHW images and all: torch.export traces no layout
guesses, so the graph needs neither onnx2tf's rank-2 form nor its NHWC input. fp32 is
converted once; fp16 (weights cast to float16), dynamic-int8 (int8 weights) and int8 (int8
weights and activations of the fully-connected layers, as onnx2tf's int8, calibrated on the
task's own training samples) are AI Edge Quantizer recipes applied to it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from payattn.errors import PayattnError
from payattn.export.tflite import INT8_OPERATORS, TFLITE_FILES

# fp16 weights, float compute: AI Edge Quantizer has no ready-made recipe for it.
FP16_RECIPE = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                              "compute_precision": "FLOAT", "explicit_dequantize": True}}]
SIGNATURE_KEY = "serving_default"  # litert-torch's one signature


def convert(model: nn.Module, example: torch.Tensor, out_dir: Path, precisions: list[str],
            calibration: np.ndarray | None, name_prefix: str) -> dict[str, Path | str]:
    """Write `{name_prefix}_{precision}.tflite` per precision into `out_dir`; return precision
    -> path, or the reason a precision was left out. A failed fp32 conversion raises."""
    fp32 = out_dir / TFLITE_FILES["fp32"].replace("model", name_prefix, 1)
    with _held_output():  # litert-torch and the quantizer narrate every pass, from import on
        try:
            import ai_edge_quantizer  # noqa: F401 (checked here, used per precision)
            import litert_torch
        except ImportError as exc:
            raise PayattnError(f"the litert-torch road needs {exc.name}: pip install --no-deps "
                               "litert-torch ai-edge-quantizer") from None
        litert_torch.convert(model, (example,)).export(str(fp32))
        made: dict[str, Path | str] = {"fp32": fp32}
        for precision in [p for p in precisions if p != "fp32"]:
            path = out_dir / TFLITE_FILES[precision].replace("model", name_prefix, 1)
            made[precision] = _quantized(fp32, path, precision, calibration)
    if "fp32" not in precisions:
        fp32.unlink()
        del made["fp32"]
    return made


def _quantized(fp32: Path, path: Path, precision: str, calibration: np.ndarray | None) -> Path | str:
    """Write the `precision` form of the fp32 file to `path`; the reason when it cannot be made."""
    from ai_edge_quantizer import quantizer, recipe

    if precision == "int8" and (calibration is None or not len(calibration)):
        return "int8 needs calibration samples from the training split"
    chosen = {"fp16": FP16_RECIPE, "dynamic-int8": recipe.dynamic_wi8_afp32(),
              "int8": _int8_recipe(recipe.static_wi8_ai8())}[precision]
    try:
        q = quantizer.Quantizer(str(fp32), chosen)
        result = q.quantize(_calibrate(q, fp32, calibration) if precision == "int8" else None)
        result.export_model(str(path), overwrite=True)
    except Exception as exc:  # one precision failing leaves the others standing
        with contextlib.suppress(OSError):
            path.unlink()
        return f"AI Edge Quantizer failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return path


def _int8_recipe(static: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Static int8 for the operators onnx2tf's int8 quantises; every other one stays float."""
    return [{**rule, "operation": name} for rule in static for name in INT8_OPERATORS]


def _calibrate(q: Any, fp32: Path, calibration: np.ndarray) -> Any:
    """Activation ranges from the training samples, fed one at a time as the app does."""
    from ai_edge_litert.interpreter import Interpreter

    (name,) = Interpreter(model_path=str(fp32)).get_signature_list()[SIGNATURE_KEY]["inputs"]
    return q.calibrate({SIGNATURE_KEY: [{name: x[None]} for x in calibration]})


@contextlib.contextmanager
def _held_output() -> Iterator[None]:
    """Hold back what the converters print (Python and native, stdout and stderr): progress
    noise that would break the export's own lines; a failure speaks through its exception."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        try:
            with contextlib.redirect_stdout(sys.__stdout__), contextlib.redirect_stderr(sys.__stderr__):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
