"""The app-facing forms of an exported model: which graphs are converted, what their
metadata states, and the check that writing it changed no output bit.

A vision model is converted twice: as trained (normalised [1, H, W, C], what bench measures)
and in an app form that takes RGB pixels on the 0-255 scale and normalises them (and turns
them to gray for a grayscale model) inside the graph. App runtimes such as MediaPipe's
ImageClassifier take camera frames in RGB only, and normalise with one mean and std for all
channels, which the training split's per-channel statistics are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import payattn
from payattn.data import Dataset
from payattn.data.tokenizer import DELIMITER_RE2
from payattn.errors import PayattnError
from payattn.export import app, verify
from payattn.export.onnx_graph import INPUT_NAMES, LUMA_WEIGHTS, OUTPUT_NAME
from payattn.config import ModelConfig
from payattn.runtime.parity import app_pixels
from payattn.train import LoadedRun

APP = "app"  # the manifest's `variant` of an app form; the others are "as-trained"


@dataclass
class Variant:
    """One converted graph: its file-name prefix, its ONNX file, and for an app form the
    per-channel training statistics (the [0, 1] scale) it normalises with."""

    prefix: str
    onnx: Path
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def app(self) -> bool:
        return self.mean is not None

    def inputs(self, x: np.ndarray | None) -> np.ndarray | None:
        """Normalised model inputs ([N, C, H, W]) in this graph's form: the app form sees the
        RGB pixels (0-255) they came from, a gray pixel in all three channels."""
        if x is None or not self.app:
            return x
        return app_pixels(x, list(self.mean), list(self.std))


def variants(cfg: ModelConfig, dataset: Dataset, onnx_path: Path) -> list[Variant]:
    """The graphs to convert: the model as trained, and for vision its app form."""
    found = [Variant("model", onnx_path)]
    if cfg.kind == "vision":
        found.append(Variant("model_app", onnx_path.with_name(".model_app.onnx"),
                             tuple(dataset.mean), tuple(dataset.std)))
    return found


def image_color(cfg: ModelConfig, app_form: bool) -> dict[str, Any]:
    """The manifest's description of what an image input expects, beyond its shape."""
    if cfg.kind != "vision":
        return {}
    size = f"{cfg.image_size}x{cfg.image_size}"
    if app_form:
        color = {"color_space": "RGB", "values": "pixels 0-255 as float32, normalised inside the graph",
                 "resize": f"to exactly {size} before feeding (MediaPipe resizes for you)"}
    else:
        color = {"color_space": "RGB" if cfg.channels == 3 else "GRAYSCALE",
                 "values": "(pixel / 255 - mean) / std per channel (see preprocessing)",
                 "resize": f"to exactly {size} before feeding"}
    if cfg.channels == 1:
        color["polarity"] = "light strokes on a dark background (MNIST): invert dark-on-light images"
    if app_form and cfg.channels == 1:
        color["to_grayscale"] = {"in_graph": True, "weights": list(LUMA_WEIGHTS)}
    return color


def app_spec(run: LoadedRun, dataset: Dataset, variant: Variant) -> app.AppSpec:
    """What the TFLite Metadata of one of this run's files states."""
    cfg, run_config = run.config, run.run_config
    task, preset = run_config.get("task"), run_config.get("preset")
    spec = app.AppSpec(
        name=f"payattn {cfg.mechanism} {task}" + (f" ({APP})" if variant.app else ""),
        description=(f"{cfg.kind} classifier with {cfg.mechanism} attention ({preset}, "
                     f"{cfg.num_classes} classes), trained by payattn on {task}. "
                     "Outputs raw logits: apply softmax for probabilities."),
        version=payattn.__version__,
        license=f"MIT (payattn); trained on {task}, whose own terms apply to the data",
        input_name=INPUT_NAMES[cfg.kind], output_name=OUTPUT_NAME, labels=list(dataset.labels),
    )
    if cfg.kind == "vision" and variant.app:  # pixels as they are; the graph normalises
        spec.color_space, spec.mean, spec.std = "RGB", [0.0] * 3, [1.0] * 3
    elif cfg.kind == "vision":
        spec.color_space = image_color(cfg, False)["color_space"]
        spec.mean = [255 * m for m in dataset.mean]
        spec.std = [255 * s for s in dataset.std]
    else:
        spec.vocab_file, spec.delimiter_re2 = run.tokenizer.vocab_file(), DELIMITER_RE2
    return spec


def finish_unchanged(path: Path, spec: app.AppSpec, inputs: np.ndarray) -> None:
    """app.finish, then prove on `inputs` (PyTorch layout) that every output bit is the same."""
    shape = (1, *inputs.shape[1:])
    before = verify.run_all(verify.open_tflite(path, shape), inputs)
    app.finish(path, spec)
    after = verify.run_all(verify.open_tflite(path, shape), inputs)
    if before.tobytes() != after.tobytes():
        raise PayattnError(f"{path.name}: writing signatures and metadata changed its outputs "
                           f"(max abs diff {np.abs(before - after).max():.3g}); please report this")


def app_entry(path: Path, variant: Variant) -> dict[str, Any]:
    """The manifest fields of one .tflite that an app developer reads: the signature it is
    run by, what its metadata holds, and how much of it LiteRT's CPU accelerator takes."""
    view = app.read(path)
    md = view.metadata
    return {
        "variant": APP if variant.app else "as-trained",
        "signature": {"key": app.SIGNATURE_KEY, **view.signatures[app.SIGNATURE_KEY]},
        "metadata": {"name": md.name.decode(), "min_parser_version": md.minParserVersion.decode(),
                     "associated_files": sorted(view.files)},
        "xnnpack": app.delegation(path),
    }
