"""Closed-form parameter and FLOP counts (shared/PAPER.md's table), per layer and per model.

FLOPs count a multiply-add as 2 and ignore biases, softmax, normalisation and activations,
as the paper does; they are the yardstick the measured speed-ups are compared against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payattn.config import ModelConfig
from payattn.errors import PayattnError
from payattn.mechanisms import canonical_mechanism

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


def block_cost(mechanism: str, d_model: int, context_length: int, mlp_dim: int,
               bias: bool = True) -> ModelCost:
    """One pre-norm block (two LayerNorms, attention, a two-layer MLP with biases) on one
    sequence of length ℓ."""
    d, ell, m = d_model, context_length, mlp_dim
    attn_p = attention_params(mechanism, d, ell, bias)
    attn_f = attention_flops(mechanism, d, ell)
    norms = 2 * (2 * d)
    mlp_p = d * m + m + m * d + d
    return ModelCost(params=norms + attn_p + mlp_p, attention_params=attn_p,
                     flops=attn_f + 4 * ell * d * m, attention_flops=attn_f)


def layer_cost(layer: Any, context_length: int | None = None) -> ModelCost:
    """The closed forms for one payattn attention layer or block (payattn.nn's or a model's)
    on one sequence: ℓ is the layer's own fixed length, else `context_length`."""
    from payattn.attention import Attention
    from payattn.models import TransformerBlock

    attn = layer.attn if isinstance(layer, TransformerBlock) else layer
    if not isinstance(attn, Attention):
        raise PayattnError(f"layer_cost takes a payattn attention layer or block, got "
                           f"{type(layer).__name__}; use module_cost for any other module")
    fixed = attn.context_length
    if fixed is not None and context_length not in (None, fixed):
        raise PayattnError(f"this layer was built for context length {fixed}, not "
                           f"{context_length}; leave context_length out or rebuild the layer")
    ell = fixed if fixed is not None else context_length
    if ell is None:
        raise PayattnError("this layer takes any length, so its cost depends on it; pass "
                           "context_length=ℓ, the length of the sequences it will see")
    bias = attn.w_q.bias is not None
    if attn is layer:
        params = attention_params(attn.mechanism, attn.d_model, ell, bias)
        flops = attention_flops(attn.mechanism, attn.d_model, ell)
        return ModelCost(params=params, attention_params=params, flops=flops, attention_flops=flops)
    return block_cost(attn.mechanism, attn.d_model, ell, layer.mlp[0].out_features, bias)


def model_cost(cfg: ModelConfig) -> ModelCost:
    """Parameters and FLOPs of a whole VisionTransformer or TextTransformer for one input."""
    d, ell = cfg.d_model, cfg.context_length
    block = block_cost(cfg.mechanism, d, ell, cfg.mlp_dim, cfg.bias)
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
        params=embed_p + cfg.depth * block.params + head_p,
        attention_params=cfg.depth * block.attention_params,
        flops=embed_f + cfg.depth * block.flops + head_f,
        attention_flops=cfg.depth * block.attention_flops,
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

    def record(layer: Attention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0] if args else kwargs["x"]  # the input, given by position or by name
        seen.append((layer, int(x.shape[-2]), int(x.numel() // (x.shape[-2] * x.shape[-1]))))

    layers = [m for m in model.modules() if isinstance(m, Attention)]
    hooks = [layer.register_forward_pre_hook(record, with_kwargs=True) for layer in layers]
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
