"""Two small Transformer classifier families, built from a `payattn.config.ModelConfig`.

Both families are pre-norm, use mean pooling (no class token, so the context length ℓ is the
number of patches or tokens exactly) and the tanh form of GELU, which converts to builtin
TFLite operators without an Erf approximation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from payattn.attention import Attention, build_attention
from payattn.config import ModelConfig
from payattn.errors import PayattnError


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block around any payattn attention layer: x + Attn(LN(x)), then
    x + MLP(LN(x)), with the tanh GELU. The one implementation behind payattn's own models
    (Block) and the public layer (payattn.nn.Block); `dropout` acts on both residual branches
    while training, and is left out of the graph otherwise: torch.export keeps even an idle
    dropout as an operator, which the ExecuTorch and litert-torch roads would then carry."""

    def __init__(self, attn: Attention, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise PayattnError(f"dropout must be in [0, 1), got {dropout}")
        d_model = attn.d_model
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = attn
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_dim, d_model),
        )
        self.dropout = dropout

    def forward(self, x: Tensor, key_padding: Tensor | None = None) -> Tensor:
        """x: [..., ℓ, d_m]; key_padding: [..., ℓ] float, 1.0 at padding (see Attention)."""
        x = x + self._drop(self.attn(self.norm1(x), key_padding))
        return x + self._drop(self.mlp(self.norm2(x)))

    def _drop(self, y: Tensor) -> Tensor:
        return nn.functional.dropout(y, self.dropout, True) if self.training and self.dropout else y


class Block(TransformerBlock):
    """The block of payattn's own models, built from their configuration."""

    def __init__(self, cfg: ModelConfig) -> None:
        attn = build_attention(cfg.mechanism, cfg.d_model, cfg.heads, cfg.context_length,
                               bias=cfg.bias, causal=cfg.causal)
        super().__init__(attn, cfg.mlp_dim)


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

