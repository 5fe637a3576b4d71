"""Two small Transformer classifier families and their named presets.

A `ModelConfig` holds every dimension, so a run dir's config.json rebuilds the exact model.
Both families are pre-norm, use mean pooling (no class token, so the context length ℓ is the
number of patches or tokens exactly) and the tanh form of GELU, which converts to builtin
TFLite operators without an Erf approximation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from payattn.attention import build_attention
from payattn.errors import PayattnError
from payattn.mechanisms import DEFAULT_HEADS, canonical_mechanism


@dataclass(frozen=True)
class ModelConfig:
    """Every dimension of a model; `context_length` is patches for vision, tokens for text."""

    kind: str  # "vision" or "text"
    mechanism: str
    d_model: int
    heads: int
    depth: int
    mlp_dim: int
    num_classes: int
    context_length: int
    image_size: int = 0
    patch_size: int = 0
    channels: int = 0
    vocab_size: int = 0
    pad_id: int = 0
    bias: bool = True
    causal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Preset:
    """A named model shape. `heads` applies to standard and optimised; efficient and super
    default to one head (the paper's v1) unless heads are given explicitly."""

    name: str
    kind: str
    d_model: int
    heads: int
    depth: int
    mlp_dim: int
    num_classes: int
    image_size: int = 0
    patch_size: int = 0
    channels: int = 0
    vocab_size: int = 0  # the most tokens the tokenizer may keep
    context_length: int = 0  # text only; vision derives it from image and patch size
    description: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("mnist-tiny", "vision", d_model=64, heads=4, depth=2, mlp_dim=128, num_classes=10,
               image_size=28, patch_size=7, channels=1,
               description="28×28×1 images, 7×7 patches (ℓ=16), d_m=64: the fast demo default"),
        Preset("mnist-wide", "vision", d_model=256, heads=4, depth=2, mlp_dim=512, num_classes=10,
               image_size=28, patch_size=7, channels=1,
               description="28×28×1 images, ℓ=16 ≪ d_m=256: where efficient attention saves most"),
        Preset("cifar100-small", "vision", d_model=128, heads=4, depth=4, mlp_dim=256, num_classes=100,
               image_size=32, patch_size=4, channels=3,
               description="32×32×3 images, 4×4 patches (ℓ=64), d_m=128"),
        Preset("imdb-paper", "text", d_model=32, heads=4, depth=1, mlp_dim=32, num_classes=2,
               vocab_size=20000, context_length=32,
               description="the paper's IMDB shape: vocab 20,000, ℓ=32, d_m=32, h=4, one block"),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PayattnError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


# Bounds of the model-shape options: large enough for every preset and the paper's models,
# small enough that a typo fails here instead of allocating gigabytes.
OVERRIDE_BOUNDS = {"d_model": (1, 4096), "heads": (1, 256), "depth": (1, 64), "mlp_dim": (1, 16384),
                   "patch_size": (1, 64), "context_length": (1, 4096), "max_vocab": (4, 1_000_000)}


def check_overrides(values: dict[str, Any]) -> None:
    """Refuse a model-shape option that is not a whole number within its bounds (None = unset)."""
    for name, value in values.items():
        if name not in OVERRIDE_BOUNDS or value is None:
            continue
        low, high = OVERRIDE_BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            flag = "--" + name.replace("_", "-")
            raise PayattnError(f"{flag} must be a whole number from {low:,} to {high:,}, got {value!r}")


def resolve_config(
    preset: str | Preset,
    mechanism: str,
    num_classes: int | None = None,
    *,
    vocab_size: int | None = None,
    **overrides: Any,
) -> ModelConfig:
    """Build a ModelConfig from a preset, a mechanism and command-line overrides (None = keep).

    `num_classes` comes from the task's labels (default: the preset's); `vocab_size` is the
    tokenizer's real vocabulary for text models.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    mechanism = canonical_mechanism(mechanism)
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - {f.name for f in fields(ModelConfig)}
    if unknown:
        raise PayattnError(f"unknown model option(s): {', '.join(sorted(unknown))}")
    check_overrides(given)
    heads = given.pop("heads", None) or DEFAULT_HEADS[mechanism] or p.heads
    base = dict(
        kind=p.kind, mechanism=mechanism, d_model=p.d_model, heads=heads, depth=p.depth,
        mlp_dim=p.mlp_dim, num_classes=num_classes or p.num_classes, image_size=p.image_size,
        patch_size=p.patch_size, channels=p.channels, context_length=p.context_length,
        vocab_size=vocab_size if vocab_size is not None else p.vocab_size,
    )
    base.update(given)
    if base["kind"] == "vision":
        if base["patch_size"] < 1 or base["image_size"] % base["patch_size"]:
            raise PayattnError(
                f"image size {base['image_size']} must be a multiple of patch size "
                f"{base['patch_size']}"
            )
        patches = (base["image_size"] // base["patch_size"]) ** 2
        if "context_length" in given and given["context_length"] != patches:
            raise PayattnError(
                f"a vision model's context length is its number of patches ({patches} here); "
                f"change --patch-size instead of --context-length"
            )
        base["context_length"] = patches
    cfg = ModelConfig(**base)
    if cfg.d_model % cfg.heads:
        raise PayattnError(f"d_model={cfg.d_model} is not divisible by heads={cfg.heads}")
    return cfg


class Block(nn.Module):
    """Pre-norm Transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = build_attention(
            cfg.mechanism, cfg.d_model, cfg.heads, cfg.context_length,
            bias=cfg.bias, causal=cfg.causal,
        )
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.mlp_dim, cfg.d_model),
        )

    def forward(self, x: Tensor, key_padding: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), key_padding)
        return x + self.mlp(self.norm2(x))


class Classifier(nn.Module):
    """What both families share after the embedding, in the pieces of timm's ViT.

    `embed` (per family) -> `encode` (blocks and final norm) -> `pool` (mean over tokens, padding
    left out) -> `head` (linear). Every piece works on any leading dims, so the export calls
    this same forward on one example without its batch axis (see export/onnx_graph.py).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.context_length, cfg.d_model))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)

    def embed(self, inputs: Tensor) -> Tensor:
        """[..., input dims] -> [..., ℓ, d_m] token embeddings with positions."""
        raise NotImplementedError

    def padding(self, inputs: Tensor) -> Tensor | None:
        """[..., ℓ] float, 1.0 at padding tokens; None when nothing is ever padded."""
        return None

    def check_input(self, inputs: Tensor) -> None:
        """Raise PayattnError, saying the expected shape, unless `inputs` ends in it."""
        raise NotImplementedError

    def encode(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        """[..., ℓ, d_m] -> [..., ℓ, d_m]: the blocks, then the final norm."""
        for block in self.blocks:
            x = block(x, padding)
        return self.norm(x)

    def pool(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        """[..., ℓ, d_m] -> [..., d_m]: the mean over the tokens that are not padding."""
        if padding is None:
            return x.mean(dim=-2)
        keep = (1.0 - padding).unsqueeze(-1)
        return (x * keep).sum(dim=-2) / keep.sum(dim=-2).clamp(min=1.0)

    def forward(self, inputs: Tensor) -> Tensor:
        """[..., input dims] -> [..., classes] logits."""
        self.check_input(inputs)
        padding = self.padding(inputs)
        return self.head(self.pool(self.encode(self.embed(inputs), padding), padding))


class VisionTransformer(Classifier):
    """ViT classifier: patch embedding, learned positions, blocks, mean pooling, linear head.

    Input: float images [..., C, H, W], already normalised (the manifest states how).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.patch_embed = nn.Conv2d(cfg.channels, cfg.d_model, cfg.patch_size, cfg.patch_size)

    def check_input(self, images: Tensor) -> None:
        expected = (self.cfg.channels, self.cfg.image_size, self.cfg.image_size)
        if tuple(images.shape[-3:]) != expected:
            raise PayattnError(
                f"expected images of shape [B, {', '.join(map(str, expected))}] (NCHW), "
                f"got {list(images.shape)}"
            )

    def embed(self, images: Tensor) -> Tensor:
        cfg = self.cfg
        patches = self.patch_embed(images.reshape(-1, *images.shape[-3:]))  # [N, d_m, H/p, W/p]
        # The patch grid in NHWC order: onnx2tf runs the convolution channels-last, so this
        # permute cancels against its own layout change and no Transpose remains.
        x = patches.permute(0, 2, 3, 1).reshape(*images.shape[:-3], cfg.context_length, cfg.d_model)
        return x + self.pos_embed[0]


class TextTransformer(Classifier):
    """Text classifier: token + position embeddings, blocks, masked mean pooling, linear head.

    Input: token ids [..., ℓ] (int32 or int64), padded with `pad_id` to exactly ℓ.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.d_model)

    def check_input(self, token_ids: Tensor) -> None:
        if token_ids.dim() < 1 or token_ids.shape[-1] != self.cfg.context_length:
            raise PayattnError(
                f"expected token ids of shape [B, {self.cfg.context_length}], got "
                f"{list(token_ids.shape)}; pad or truncate to {self.cfg.context_length} tokens"
            )

    def padding(self, token_ids: Tensor) -> Tensor:
        return (token_ids == self.cfg.pad_id).to(torch.float32)

    def embed(self, token_ids: Tensor) -> Tensor:
        # int64 indices: TensorFlow treats a rank-1 int32 tensor as a possible shape, and
        # onnx2tf's Gather then fails on the partial value it infers for it.
        return self.tok_embed(token_ids.to(torch.int64)) + self.pos_embed[0]


def build_model(cfg: ModelConfig) -> Classifier:
    if cfg.kind == "vision":
        return VisionTransformer(cfg)
    if cfg.kind == "text":
        return TextTransformer(cfg)
    raise PayattnError(f"unknown model kind {cfg.kind!r}; expected 'vision' or 'text'")

