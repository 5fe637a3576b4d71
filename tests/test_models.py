"""The model pieces (embed, encode, pool, head) work on any leading dims, so one forward serves
training (batched) and export (one example without its batch axis)."""

from __future__ import annotations

import pytest
import torch

from payattn.config import resolve_config
from payattn.models import build_model


@pytest.mark.parametrize("preset,mechanism", [("mnist-tiny", "standard"), ("mnist-tiny", "super"),
                                              ("imdb-paper", "optimised"), ("imdb-paper", "super")])
def test_forward_on_any_leading_dims(preset: str, mechanism: str) -> None:
    cfg = resolve_config(preset, mechanism, vocab_size=50 if preset == "imdb-paper" else None)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if cfg.kind == "vision":
        x = torch.randn(2, 3, cfg.channels, cfg.image_size, cfg.image_size)
    else:
        x = torch.randint(1, 50, (2, 3, cfg.context_length))
        x[..., cfg.context_length // 2:] = cfg.pad_id  # padded halves
    with torch.no_grad():
        batched = model(x)
        flat = model(x.reshape(6, *x.shape[2:]))
        single = torch.stack([model(sample) for sample in x.reshape(6, *x.shape[2:])])
        padding = model.padding(x[0, 0])
        pieces = model.head(model.pool(model.encode(model.embed(x[0, 0]), padding), padding))
    assert batched.shape == (2, 3, cfg.num_classes)
    torch.testing.assert_close(batched.reshape(6, -1), flat, atol=1e-5, rtol=0)
    torch.testing.assert_close(single, flat, atol=1e-5, rtol=0)
    torch.testing.assert_close(pieces, flat[0], atol=1e-5, rtol=0)
    assert model.embed(x).shape == (*x.shape[:2], cfg.context_length, cfg.d_model)
