"""PyTorch -> ONNX: a batch-1 graph with rank-2 activations, simplified by onnxslim and checked.

The exported graph is the trained model's own forward (embed, encode, pool, head; each works
on any leading dims) called on one example with its batch axis dropped: activations are
[ℓ, d_m] rather than [1, ℓ, d_m]. onnx2tf decides whether a rank-3+ tensor
is channels-last by comparing shapes, and takes [1, ℓ, d_m] with ℓ = d_m for its own
transpose: the imdb-paper shape (ℓ = d_m = 32) converted silently wrong that way. Rank-2
tensors get no such guess, so every shape converts alike; the attention's per-head tensors
keep two leading unit axes for the same reason (Attention._split). The only Transposes left
in the TFLite graph are the multi-head splits and merges themselves (none with one head).

Verification (verify.py) compares this graph with the batched model on every export.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import onnxslim
import torch
from torch import Tensor, nn

from payattn.errors import PayattnError
from payattn.config import ModelConfig
from payattn.models import Classifier

# Opset 20 has GELU as one operator (opset 17 LayerNormalization too): onnx2tf turns the
# models' tanh GELU into TFLite's builtin GELU, one op where opset 17 gave eight.
OPSET = 20
INPUT_NAMES = {"vision": "images", "text": "token_ids"}
OUTPUT_NAME = "logits"


class Unbatched(nn.Module):
    """The model's own forward on one example without its batch axis: [ℓ, d_m] activations."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs.reshape(inputs.shape[1:])).reshape(1, -1)


# ITU-R BT.601 luma weights: how camera RGB becomes the grayscale MNIST was drawn in.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class AppVisionGraph(nn.Module):
    """A vision model's app form: [1, 3, H, W] RGB pixels on the 0-255 scale in. One fixed
    1x1 convolution normalises them with the training split's per-channel mean and std (the
    [0, 1] scale), and for a grayscale model takes their BT.601 luma, before Unbatched (or,
    `unbatched=False`, the model itself: litert-torch needs no rank-2 graph)."""

    def __init__(self, model: Classifier, mean: tuple[float, ...], std: tuple[float, ...],
                 unbatched: bool = True) -> None:
        super().__init__()
        self.body = Unbatched(model) if unbatched else model  # not `graph`: torch.export reserves it
        mean64, std64 = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
        mix = torch.tensor([LUMA_WEIGHTS], dtype=torch.float64) if len(mean) == 1 else torch.eye(3, dtype=torch.float64)
        self.register_buffer("weight", (mix / (255 * std64[:, None])).float().reshape(len(mean), 3, 1, 1))
        self.register_buffer("bias", (-mean64 / std64).float())

    def forward(self, images: Tensor) -> Tensor:
        return self.body(nn.functional.conv2d(images, self.weight, self.bias))


def example_input(cfg: ModelConfig, app: bool = False) -> Tensor:
    """A batch-1 input of the exported graph's exact shape and dtype (`app`: the app form's)."""
    if cfg.kind == "vision":
        return torch.zeros(1, 3 if app else cfg.channels, cfg.image_size, cfg.image_size)
    return torch.ones(1, cfg.context_length, dtype=torch.int32)


def export_onnx(model: Classifier, cfg: ModelConfig, path: Path,
                app_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> None:
    """Write the simplified, checked ONNX graph of `model` to `path` (static shapes, batch 1);
    with `app_stats` (mean, std), the app form of a vision model instead."""
    if app_stats is not None and cfg.kind != "vision":
        raise PayattnError("only vision models have an app form with normalisation in the graph")
    graph: nn.Module = Unbatched(model) if app_stats is None else AppVisionGraph(model, *app_stats)
    raw = path.with_name(f".{path.name}.raw")
    with warnings.catch_warnings():
        # The models' input checks are constant for a fixed-shape trace; and the TorchScript
        # exporter is chosen on purpose (the dynamo one needs onnxscript and emits functions
        # onnx2tf does not read), so its deprecation notice is noise here.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph.eval(), (example_input(cfg, app_stats is not None),), str(raw), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAMES[cfg.kind]], output_names=[OUTPUT_NAME],
            do_constant_folding=True,
        )
    # onnxslim folds constant subgraphs (the attention scale among them: onnx2tf fails on it
    # unfolded) and fuses MatMul + Add into Gemm.
    slim = onnxslim.slim(onnx.load(str(raw)))
    raw.unlink()
    onnx.checker.check_model(slim, full_check=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(slim, str(tmp))
    tmp.replace(path)
