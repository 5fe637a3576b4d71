"""Closed-form parameter and FLOP counts (shared/PAPER.md's table), per layer and per model.

FLOPs count a multiply-add as 2 and ignore biases, softmax, normalisation and activations,
as the paper does; they are the yardstick the measured speed-ups are compared against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payattn.mechanisms import canonical_mechanism
from payattn.config import ModelConfig

# How many d_m×d_m projections each mechanism learns (W^O included).
_PROJECTIONS = {"standard": 4, "optimised": 3, "efficient": 2, "super": 2}


def attention_params(mechanism: str, d_model: int, context_length: int, bias: bool = True) -> int:
    """Parameters of one attention layer: n·d_m² (+ n·d_m biases), plus ℓ² for super's W^A."""
    mechanism = canonical_mechanism(mechanism)
    n = _PROJECTIONS[mechanism]
    count = n * d_model * d_model + (n * d_model if bias else 0)
    if mechanism == "super":
        count += context_length * context_length
    return count


def attention_flops(mechanism: str, d_model: int, context_length: int) -> int:
    """FLOPs of one attention layer on one sequence of length ℓ."""
    mechanism = canonical_mechanism(mechanism)
    ell, d = context_length, d_model
    flops = 2 * _PROJECTIONS[mechanism] * ell * d * d + 4 * ell * ell * d
    if mechanism == "super":
        flops += 2 * ell * ell * d  # W^A (ℓ×ℓ) times V (ℓ×d_m)
    return flops


@dataclass(frozen=True)
class ModelCost:
    params: int
    attention_params: int
    flops: int
    attention_flops: int


def model_cost(cfg: ModelConfig) -> ModelCost:
    """Parameters and FLOPs of a whole VisionTransformer or TextTransformer for one input."""
    d, ell, m = cfg.d_model, cfg.context_length, cfg.mlp_dim
    attn_p = attention_params(cfg.mechanism, d, ell, cfg.bias)
    attn_f = attention_flops(cfg.mechanism, d, ell)
    norms = 2 * (2 * d)
    mlp_p = d * m + m + m * d + d
    block_p = norms + attn_p + mlp_p
    block_f = attn_f + 4 * ell * d * m
    head_p = 2 * d + d * cfg.num_classes + cfg.num_classes  # final norm and classifier
    head_f = 2 * d * cfg.num_classes
    if cfg.kind == "vision":
        patch = cfg.channels * cfg.patch_size * cfg.patch_size
        embed_p = patch * d + d + ell * d
        embed_f = 2 * ell * patch * d
    else:
        embed_p = cfg.vocab_size * d + ell * d
        embed_f = 0  # an embedding lookup has no multiply-adds
    return ModelCost(
        params=embed_p + cfg.depth * block_p + head_p,
        attention_params=cfg.depth * attn_p,
        flops=embed_f + cfg.depth * block_f + head_f,
        attention_flops=cfg.depth * attn_f,
    )


def module_cost(model: Any, example_inputs: tuple[Any, ...]) -> ModelCost:
    """Parameters and FLOPs of any torch module on `example_inputs`, as given (batch included).

    FLOPs are torch's own count of the forward's matrix products and convolutions, the
    closed forms' yardstick; attention is each payattn attention layer's closed form at the
    length it saw, so a model payattn did not build is measured as its own models are."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from payattn.attention import Attention

    seen: list[tuple[Attention, int, int]] = []  # (layer, ℓ, sequences in the call)

    def record(layer: Attention, args: tuple[Any, ...]) -> None:
        x = args[0]
        seen.append((layer, int(x.shape[-2]), int(x.numel() // (x.shape[-2] * x.shape[-1]))))

    layers = [m for m in model.modules() if isinstance(m, Attention)]
    hooks = [layer.register_forward_pre_hook(record) for layer in layers]
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(*example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return ModelCost(
        params=sum(p.numel() for p in model.parameters()),
        attention_params=sum(p.numel() for layer in layers for p in layer.parameters()),
        flops=int(counter.get_total_flops()),
        attention_flops=sum(n * attention_flops(layer.mechanism, layer.d_model, ell)
                            for layer, ell, n in seen),
    )
