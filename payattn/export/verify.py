"""Run every exported artifact beside the PyTorch model and hold it to fixed tolerances.

Each artifact sees the same inputs as PyTorch: a few random ones (shapes and values an app
might send) and real samples of the task's test split. `check` returns an artifact's figures
— the largest absolute logit difference, the top-1 agreement with PyTorch, the test accuracy
— beside the limits they are held to (float artifacts must match the logits closely; int8
ones must pick the same class almost always); `validate` raises VerificationError for any
miss, with the figures. The caller decides what stops the run (export: any miss).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from payattn.data import subset
from payattn.errors import PayattnError
from payattn.config import ModelConfig
from payattn.runtime import parity as device_parity

# Max abs logit difference allowed against PyTorch, by precision (ONNX counts as fp32).
MAX_ABS_DIFF = {"fp32": 1e-4, "fp16": 1e-2}
# fp16 stores weights with an 11-bit mantissa, so its logit error grows with the logits:
# its limit is 1e-2 per unit of the largest |logit| (never below 1e-2). A trained mnist-5k
# model with logits near 11 shows fp16 differences of 0.011, with all top-1 classes equal.
SCALED_BY_LOGITS = ("fp16",)
# Share of test samples whose top-1 class must match PyTorch's, by precision.
MIN_TOP1_AGREEMENT = {"dynamic-int8": 0.98, "int8": 0.98}
RANDOM_INPUTS = 8
MAX_TEST_SAMPLES = 1000  # enough for 0.1% resolution on agreement and accuracy


@dataclass
class Samples:
    """Verification inputs in the PyTorch layout, batch axis first."""

    random: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_split_size: int


@dataclass
class OpenModel:
    """One artifact loaded in its runtime for verification: its app-facing tensors, and a batch-1
    call in PyTorch layout."""

    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    run: Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Check:
    """One artifact's figures against PyTorch, and the limits they are held to (None: no limit)."""

    file: str
    precision: str
    max_abs_diff: float
    max_abs_diff_limit: float | None
    top1_agreement: float
    min_top1_agreement: float | None
    samples: int  # random inputs and test samples
    test_samples: int
    test_accuracy: float

    @property
    def failures(self) -> list[str]:
        """The limits this artifact misses, each with its figures; empty when it passes (the same
        check a device runs later, payattn.runtime.parity, with the limits the manifest records)."""
        return device_parity.problems(self.file, self.precision, self.parity, self.max_abs_diff_limit,
                                      self.min_top1_agreement, self.test_samples)

    @property
    def parity(self) -> dict[str, Any]:
        """The manifest's parity figures."""
        return {"max_abs_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement,
                "samples": self.samples}


class VerificationError(PayattnError):
    """Artifacts missed their limits; `checks` holds every artifact's figures."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks
        super().__init__("verification failed: " + "; ".join(p for c in checks for p in c.failures))


def make_samples(cfg: ModelConfig, test_x: np.ndarray, test_y: np.ndarray,
                 max_test: int = MAX_TEST_SAMPLES, seed: int = 0) -> Samples:
    """Random inputs of the model's shape, plus up to `max_test` test samples."""
    rng = np.random.default_rng(seed)
    if cfg.kind == "vision":
        shape = (RANDOM_INPUTS, cfg.channels, cfg.image_size, cfg.image_size)
        random = rng.standard_normal(shape).astype(np.float32)  # normalised-pixel scale
    else:
        random = rng.integers(1, cfg.vocab_size, (RANDOM_INPUTS, cfg.context_length)).astype(np.int32)
        lengths = rng.integers(1, cfg.context_length + 1, RANDOM_INPUTS)
        lengths[0] = cfg.context_length  # one sequence without padding
        for row, length in enumerate(lengths):
            random[row, length:] = cfg.pad_id
    keep = subset(len(test_x), max_test, seed)
    return Samples(random, test_x[keep], test_y[keep], len(test_x))


@torch.no_grad()
def torch_logits(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([
        model(torch.from_numpy(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)
    ])


def open_onnx(path: Path) -> OpenModel:
    """Load with ONNX Runtime, as a device's parity check does."""
    session = device_parity.onnxruntime_session(path)
    dtype = {"tensor(float)": "float32", "tensor(int32)": "int32"}
    inputs = [{"name": t.name, "shape": list(t.shape), "dtype": dtype.get(t.type, t.type)}
              for t in session.get_inputs()]
    outputs = [{"name": t.name, "shape": list(t.shape), "dtype": dtype.get(t.type, t.type)}
               for t in session.get_outputs()]
    return OpenModel(inputs, outputs, device_parity.onnxruntime_call(session, session.get_inputs()[0].name))


def open_tflite(path: Path, torch_shape: tuple[int, ...]) -> OpenModel:
    """Load with LiteRT, as a device's parity check does; an NHWC image input gets PyTorch's
    NCHW samples transposed."""
    interpreter = device_parity.litert_interpreter(path)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    shape = tuple(int(d) for d in inp["shape"])
    nhwc = len(torch_shape) == 4 and shape == tuple(torch_shape[i] for i in (0, 2, 3, 1))
    if not nhwc and shape != tuple(torch_shape):
        raise PayattnError(f"{path.name} takes input shape {list(shape)}, which is neither the "
                           f"model's {list(torch_shape)} nor its NHWC form")
    layout = "NHWC" if nhwc else ("NCHW" if len(shape) == 4 else "tokens")
    inputs = [{"name": inp["name"], "shape": list(shape), "dtype": np.dtype(inp["dtype"]).name,
               "layout": layout}]
    outputs = [{"name": out["name"], "shape": [int(d) for d in out["shape"]],
                "dtype": np.dtype(out["dtype"]).name}]
    return OpenModel(inputs, outputs, device_parity.litert_call(interpreter, nhwc))


def open_pte(path: Path, example: torch.Tensor, name: str) -> OpenModel:
    """Load with ExecuTorch, as a device's parity check does. A .pte names no tensors: its one
    input takes the ONNX graph's `name` and the example's shape, layout and dtype."""
    dtype = str(example.dtype).removeprefix("torch.")
    call = device_parity.executorch_call(device_parity.executorch_method(path, device_parity.THREADS), dtype)
    out = call(example.numpy())
    layout = "NCHW" if example.dim() == 4 else "tokens"
    inputs = [{"name": name, "shape": list(example.shape), "dtype": dtype, "layout": layout}]
    return OpenModel(inputs, [{"name": "logits", "shape": list(out.shape), "dtype": out.dtype.name}], call)


def run_all(model: OpenModel, x: np.ndarray) -> np.ndarray:
    return device_parity.run_each(model.run, x)


def check(file: str, precision: str, reference: np.ndarray, logits: np.ndarray, samples: Samples,
          logit_scale: float) -> Check:
    """The figures of one artifact, given its logits and PyTorch's on all samples (the random
    inputs first, then the test samples), with the limits for its precision."""
    n_random = len(samples.random)
    parity = device_parity.figures(reference, logits, n_random)
    return Check(file=file, precision=precision, max_abs_diff=parity["max_abs_diff"],
                 max_abs_diff_limit=tolerance(precision, logit_scale),
                 top1_agreement=parity["top1_agreement"], min_top1_agreement=MIN_TOP1_AGREEMENT.get(precision),
                 samples=parity["samples"], test_samples=len(samples.test_x),
                 test_accuracy=float((logits[n_random:].argmax(1) == samples.test_y).mean()))


def validate(checks: list[Check]) -> None:
    """Raise VerificationError when any artifact missed a limit."""
    if any(c.failures for c in checks):
        raise VerificationError(checks)


def tolerance(precision: str, logit_scale: float) -> float | None:
    """Max abs logit difference allowed at `precision`; `logit_scale` = largest |PyTorch logit|."""
    limit = MAX_ABS_DIFF.get(precision)
    if limit is not None and precision in SCALED_BY_LOGITS:
        limit *= max(1.0, logit_scale)
    return limit
