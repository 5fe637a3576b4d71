"""The four attention mechanisms as drop-in layers for your own batch-first PyTorch models.

    from payattn.nn import Attention, Block

    attn = Attention(64, 4, mechanism="efficient")        # instead of nn.MultiheadAttention
    out = attn(x, key_padding_mask=mask)                  # x: [B, ℓ, 64] -> [B, ℓ, 64]

Both are thin fronts on payattn's own implementation (payattn.attention.Attention and the
block of payattn.models), so the maths, the exported graph, `mechanisms_in` and
`payattn.cost.module_cost` / `layer_cost` are the same for them as for payattn's models.
Masks follow nn.MultiheadAttention: a bool `key_padding_mask` of shape [B, ℓ], True where a
token is padding. docs/nn.md sets out what differs from nn.MultiheadAttention.
"""

from __future__ import annotations

import torch
from torch import Tensor

from payattn import attention, models
from payattn.errors import PayattnError
from payattn.mechanisms import canonical_mechanism

__all__ = ["Attention", "Block"]


class Attention(attention.Attention):
    """Self-attention with one of the paper's mechanisms: [B, ℓ, d_model] -> [B, ℓ, d_model].

    mechanism: standard, optimised (alias optimized), efficient or super.
    heads: None takes the mechanism's default (1 for efficient and super, as in the paper's v1;
        1 for standard and optimised too, so pass the count you want).
    context_length: None takes any length; super (W^A is ℓ×ℓ) and causal layers need it fixed,
        and then reject inputs of another length.
    causal: each token attends only to itself and earlier tokens (super's W^A is masked too).
    bias: biases on the learned projections W^Q, W^K, W^V, W^O.
    """

    def __init__(self, d_model: int, heads: int | None = None, mechanism: str = "standard",
                 context_length: int | None = None, causal: bool = False,
                 bias: bool = True) -> None:
        name = canonical_mechanism(mechanism)
        super().__init__(d_model, attention.default_heads(name, heads), context_length,
                         bias=bias, causal=causal, **attention.LAYOUTS[name])

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """x: [B, ℓ, d_model] (any leading dims); key_padding_mask: [B, ℓ] bool, True = padding."""
        _check_input(x, self.d_model)
        return super().forward(x, _padding(key_padding_mask, x))


class Block(models.TransformerBlock):
    """Pre-norm Transformer block: x + Attention(LN(x)), then x + MLP(LN(x)) with tanh GELU.

    The same block payattn's own models use. `mlp_dim` defaults to 4·d_model; `dropout` acts
    on the two residual branches while training; `bias` is the attention's (the MLP and the
    norms always have theirs). The other arguments are Attention's.
    """

    def __init__(self, d_model: int, heads: int | None = None, mechanism: str = "standard",
                 mlp_dim: int | None = None, context_length: int | None = None,
                 causal: bool = False, bias: bool = True, dropout: float = 0.0) -> None:
        attn = attention.build_attention(mechanism, d_model, heads, context_length,
                                         bias=bias, causal=causal)
        super().__init__(attn, 4 * d_model if mlp_dim is None else mlp_dim, dropout)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """x: [B, ℓ, d_model] (any leading dims); key_padding_mask: [B, ℓ] bool, True = padding."""
        _check_input(x, self.attn.d_model)
        return super().forward(x, _padding(key_padding_mask, x))


def _padding(key_padding_mask: Tensor | None, x: Tensor) -> Tensor | None:
    """nn.MultiheadAttention's bool mask (True = padding) as payattn's float form (1.0 = padding)."""
    if key_padding_mask is None:
        return None
    if key_padding_mask.dtype != torch.bool:
        raise PayattnError(
            f"key_padding_mask must be a bool tensor (True = padding), got {key_padding_mask.dtype}; "
            f"pass mask.bool() for a 0/1 mask, or (mask != 0) for an additive float one"
        )
    if tuple(key_padding_mask.shape) != tuple(x.shape[:-1]):
        raise PayattnError(
            f"key_padding_mask has shape {list(key_padding_mask.shape)} but the input "
            f"{list(x.shape)} needs {list(x.shape[:-1])} ([B, ℓ], one flag per token)"
        )
    return key_padding_mask.to(x.dtype)


def _check_input(x: Tensor, d_model: int) -> None:
    """One clear error for a wrong width or a sequence-first input, before any matmul fails."""
    if x.dim() < 2 or x.shape[-1] != d_model:
        raise PayattnError(
            f"expected an input of shape [B, ℓ, {d_model}] (batch first), got {list(x.shape)}; "
            f"for nn.MultiheadAttention's default [ℓ, B, d] layout pass x.transpose(0, 1)"
        )

