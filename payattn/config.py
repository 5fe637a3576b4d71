"""Model configurations, the named presets and the model-shape settings, without torch.

A `ModelConfig` holds every dimension, so a run dir's config.json rebuilds the exact model
(payattn.models builds it). This module is plain Python, so the commands that only count
(`payattn info`) or read files never load torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

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


@dataclass(frozen=True)
class ShapeSetting:
    """A model-shape setting a command takes: the options of `info`, `train`, `export` and
    `sweep`, the bounds check and the sweep grid all derive from the one table below."""

    name: str  # the ModelConfig field (or `max_vocab`, the tokenizer's cap); --name-with-dashes
    help: str  # what it sets, as a noun phrase
    kind: type = int  # int, or bool for an on/off flag
    low: int = 0  # inclusive bounds of an int: large enough for every preset and the paper's
    high: int = 0  # models, small enough that a typo fails at once instead of allocating gigabytes
    sweeps: bool = True  # a sweep takes several values of it (one grid axis)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> None:
        """Refuse a value of the wrong type or out of bounds (None = unset, always fine)."""
        if value is None:
            return
        if self.kind is bool:
            if not isinstance(value, bool):
                raise PayattnError(f"{self.flag} is on or off, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise PayattnError(f"{self.flag} must be a whole number from {self.low:,} to "
                               f"{self.high:,}, got {value!r}")


SHAPE_SETTINGS: tuple[ShapeSetting, ...] = (
    ShapeSetting("d_model", "the model width d_m", low=1, high=4096),
    ShapeSetting("heads", "the head count (default: the preset's; 1 for efficient and super)",
                 low=1, high=256),
    ShapeSetting("depth", "the number of blocks", low=1, high=64),
    ShapeSetting("mlp_dim", "the MLP width", low=1, high=16384),
    ShapeSetting("patch_size", "the patch size (vision)", low=1, high=64),
    ShapeSetting("context_length", "ℓ, the token count (text)", low=1, high=4096),
    ShapeSetting("max_vocab", "the tokenizer's vocabulary cap (text)", low=4, high=1_000_000),
    ShapeSetting("bias", "biases in the attention projections (default: on)", kind=bool, sweeps=False),
)


def check_overrides(values: dict[str, Any]) -> None:
    """Refuse a model-shape value of the wrong type or out of its bounds (None = unset); names
    outside the table are left to the caller."""
    known = {s.name: s for s in SHAPE_SETTINGS}
    for name, value in values.items():
        if name in known:
            known[name].check(value)


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
