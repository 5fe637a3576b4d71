"""The four attention mechanisms of "You Need to Pay Better Attention".

Every mechanism maps X ∈ R^{B×ℓ×d_m} to R^{B×ℓ×d_m} with self-attention (Q = K = V = X).
They differ only in which of W^Q, W^K, W^V are learned (see shared/PAPER.md):

    standard   Q W^Q, K W^K, V W^V, W^O          4·d_m² parameters
    optimised  Q W^Q, K W^K, V[:, i], W^O        3·d_m²
    efficient  Q W^Q, K[:, i], V[:, i], W^O      2·d_m²
    super      efficient, with V' = W^A V        2·d_m² + ℓ²

The tensor code uses plain matmul / reshape / transpose / softmax with shapes fixed by the
configuration, so that torch.onnx.export and onnx2tf see a small static graph. Every product of
two activations (scores, weights × values, W^A × values) is taken on rank-4+ tensors: the TFLite
converter turns a rank-2 one into a FULLY_CONNECTED whose weight is not constant, which LiteRT's
XNNPACK delegate refuses, so the graph split around it and ran the scores on reference kernels.
Rank-4 products become BATCH_MATMUL (with adj_y for q·kᵀ), which XNNPACK takes: every float
graph then runs as one delegate partition. With one head no transpose is needed at all.
"""

from __future__ import annotations

import math
import torch
from torch import Tensor, nn

from payattn.errors import PayattnError
from payattn.mechanisms import DEFAULT_HEADS, canonical_mechanism

# A large finite negative instead of -inf: a fully masked row then gives a uniform softmax
# rather than NaN, and the constant survives fp16 conversion of the graph's weights.
MASK_VALUE = -1e9
# A padded key's score is set this far below its row's lowest score: its softmax weight is
# then under e^-30 ≈ 1e-13 of every real key's, yet the scores keep a small range. Adding
# MASK_VALUE instead left an int8 TFLite model no resolution for the real scores (its
# quantisation range spanned 1e9): top-1 agreement with PyTorch fell to 82-92% on text.
MASK_MARGIN = 30.0


class Attention(nn.Module):
    """Multi-head self-attention in which each of W^Q, W^K, W^V is either learned or absent.

    Absent projections use the i-th head's d_k-column slice of the input, as in the paper.
    `align` adds super attention's ℓ×ℓ W^A, shared by all heads and applied to the values.
    `context_length=None` takes inputs of any length; super and causal layers need a fixed one.
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        context_length: int | None,
        *,
        project_k: bool,
        project_v: bool,
        align: bool = False,
        bias: bool = True,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if heads < 1 or d_model % heads:
            raise PayattnError(
                f"d_model={d_model} must be divisible by heads={heads}; choose heads among "
                f"{[h for h in range(1, d_model + 1) if d_model % h == 0]}"
            )
        if context_length is None and (align or causal):
            what, why = ("super", "its W^A mixes tokens and is ℓ×ℓ") if align else \
                ("causal", "its mask is a constant ℓ×ℓ matrix in the graph")
            raise PayattnError(
                f"{what} attention needs a fixed context_length ({why}); pass "
                f"context_length=ℓ and pad or truncate every input to ℓ tokens"
            )
        if context_length is not None and context_length < 1:
            raise PayattnError(f"context_length must be positive, got {context_length}")
        self.d_model, self.heads, self.context_length = d_model, heads, context_length
        self.head_dim = d_model // heads
        self.causal = causal
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias) if project_k else None
        self.w_v = nn.Linear(d_model, d_model, bias=bias) if project_v else None
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.w_a = nn.Parameter(torch.eye(context_length)) if align else None
        if causal:
            tril = torch.tril(torch.ones(context_length, context_length))
            self.register_buffer("causal_bias", (1.0 - tril) * MASK_VALUE, persistent=False)
            self.register_buffer("align_mask", tril, persistent=False)

    @property
    def mechanism(self) -> str:
        """Which of the paper's four mechanisms this layer is, read from what it learns."""
        if self.w_a is not None:
            return "super"
        if self.w_k is None:
            return "efficient"
        return "optimised" if self.w_v is None else "standard"

    def forward(self, x: Tensor, key_padding: Tensor | None = None) -> Tensor:
        """x: [..., ℓ, d_m]; key_padding: [..., ℓ] float, 1.0 where the token is padding.

        Any leading dims work, including none: the export feeds batch-1 inputs as rank-2
        [ℓ, d_m] tensors so that the converted graph has no batch axis to mistake for a layout.
        """
        if x.shape[-2] != self.context_length and (self.w_a is not None or self.causal):
            raise PayattnError(
                f"this attention layer was built for context length {self.context_length}, "
                f"got an input of length {x.shape[-2]}; pad or truncate inputs to "
                f"{self.context_length} tokens or rebuild the model with that length"
            )
        # The scale folded into W^Q: an exported graph then has no separate Mul to run.
        bias = None if self.w_q.bias is None else self.w_q.bias * self.scale
        q = nn.functional.linear(x, self.w_q.weight * self.scale, bias)
        k = x if self.w_k is None else self.w_k(x)
        v = x if self.w_v is None else self.w_v(x)
        if key_padding is not None:
            # Padded positions contribute no value, so W^A cannot carry them into real tokens.
            v = v * (1.0 - key_padding).unsqueeze(-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        if self.w_a is not None:  # after the split, so that it is a rank-4+ product (see above)
            w_a = self.w_a * self.align_mask if self.causal else self.w_a
            v = torch.matmul(w_a, v)
        scores = torch.matmul(q, k.transpose(-2, -1))
        if self.causal:
            scores = scores + self.causal_bias
        if key_padding is not None:
            pad = key_padding.unsqueeze(-2)  # [..., 1, ℓ]: one row of keys for every query
            pad = pad if self.heads == 1 else pad.unsqueeze(-3)
            floor = scores.amin(dim=-1, keepdim=True).detach() - MASK_MARGIN
            scores = scores + pad * (floor - scores)
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.w_o(self._merge(out, x.shape))

    def _split(self, t: Tensor) -> Tensor:
        """[..., ℓ, d_m] -> [..., h, ℓ, d_k]; one head keeps [..., ℓ, d_m] (a free reshape).

        A rank-2 input (the export's batch-1 form) becomes [1, 1, h, ℓ, d_k] (one head:
        [1, 1, ℓ, d_m]). onnx2tf infers
        the layout of a rank-3+ tensor from its shape and mistakes [ℓ, h, d_k] or [h, ℓ, d_k]
        for a transpose when sizes repeat (ℓ = h with d_k = 1 converted wrong); two leading
        unit axes keep every shape unambiguous, and the TFLite converter drops them again.
        """
        lead = t.shape[:-2] or (1, 1)
        if self.heads == 1:
            return t.reshape(*lead, *t.shape[-2:])
        return t.reshape(*lead, t.shape[-2], self.heads, self.head_dim).transpose(-3, -2)

    def _merge(self, t: Tensor, shape: torch.Size) -> Tensor:
        """[..., h, ℓ, d_k] -> `shape` ([..., ℓ, d_m], the input's); a reshape for one head."""
        if self.heads == 1:
            return t.reshape(shape)
        return t.transpose(-3, -2).reshape(shape)


# What each mechanism learns, as Attention's keyword arguments, in the paper's order.
LAYOUTS: dict[str, dict[str, bool]] = {
    "standard": {"project_k": True, "project_v": True, "align": False},
    "optimised": {"project_k": True, "project_v": False, "align": False},
    "efficient": {"project_k": False, "project_v": False, "align": False},
    "super": {"project_k": False, "project_v": False, "align": True},
}


def default_heads(mechanism: str, heads: int | None) -> int:
    """`heads`, or when None the mechanism's default: 1 (the paper's v1 for efficient and super;
    standard and optimised have none of their own, a preset gives theirs)."""
    return heads if heads is not None else DEFAULT_HEADS[mechanism] or 1


def build_attention(
    name: str,
    d_model: int,
    heads: int | None = None,
    context_length: int | None = None,
    *,
    bias: bool = True,
    causal: bool = False,
) -> Attention:
    """Build one attention layer; `heads=None` takes the mechanism's default (see default_heads),
    `context_length=None` any length (not for super or causal, which need a fixed one)."""
    mechanism = canonical_mechanism(name)
    return Attention(d_model, default_heads(mechanism, heads), context_length, bias=bias,
                     causal=causal, **LAYOUTS[mechanism])


def mechanisms_in(module: nn.Module) -> list[str]:
    """The mechanisms of the attention layers inside `module`, in the paper's order; empty
    when it has none (a model payattn did not build, with attention of its own or none)."""
    found = {layer.mechanism for layer in module.modules() if isinstance(layer, Attention)}
    return [name for name in LAYOUTS if name in found]
