"""Closed-form costs: PAPER.md's table, and whole-model counts equal to the real modules'."""

import pytest

from payattn.cost import attention_flops, model_cost
from payattn.config import resolve_config
from payattn.models import build_model

MECHS = ["standard", "optimised", "efficient", "super"]


def test_flops_table_of_paper() -> None:
    ell, d = 10, 6
    assert attention_flops("standard", d, ell) == 8 * ell * d * d + 4 * ell * ell * d
    assert attention_flops("optimised", d, ell) == 6 * ell * d * d + 4 * ell * ell * d
    assert attention_flops("efficient", d, ell) == 4 * ell * d * d + 4 * ell * ell * d
    assert attention_flops("super", d, ell) == 4 * ell * d * d + 6 * ell * ell * d


def test_paper_speedups_at_equal_length_and_width() -> None:
    d = ell = 32
    std = attention_flops("standard", d, ell)
    assert std / attention_flops("efficient", d, ell) == pytest.approx(1.5)
    assert std / attention_flops("super", d, ell) == pytest.approx(1.2)


@pytest.mark.parametrize("mechanism", MECHS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("mnist-tiny", {}),
        ("mnist-tiny", {"d_model": 24, "heads": 3, "patch_size": 4, "depth": 3}),
        ("cifar100-small", {"depth": 1}),
        ("imdb-paper", {}),
        ("imdb-paper", {"context_length": 17, "d_model": 40, "heads": 5, "mlp_dim": 7}),
    ],
)
def test_model_params_match_closed_form(mechanism, bias, preset, overrides) -> None:
    cfg = resolve_config(preset, mechanism, vocab_size=500 if preset == "imdb-paper" else None,
                         bias=bias, **overrides)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == model_cost(cfg).params
    attn = sum(p.numel() for b in model.blocks for p in b.attn.parameters())
    assert attn == model_cost(cfg).attention_params


@pytest.mark.parametrize("mechanism", ["standard", "optimised", "efficient", "super"])
def test_module_cost_of_a_payattn_model_matches_the_closed_forms(mechanism):
    """Walking any module finds the same attention figures the closed forms give; torch's own
    FLOP count agrees with the model's closed form (which ignores biases, as torch does)."""
    import torch

    from payattn.cost import module_cost

    cfg = resolve_config("mnist-tiny", mechanism)
    model = build_model(cfg).eval()
    image = torch.zeros(1, cfg.channels, cfg.image_size, cfg.image_size)
    found, expected = module_cost(model, (image,)), model_cost(cfg)
    assert found.params == expected.params
    assert found.attention_params == expected.attention_params
    assert found.attention_flops == expected.attention_flops
    assert found.flops == expected.flops


def test_module_cost_sees_an_attention_layer_called_with_its_input_by_name():
    import torch
    from torch import nn

    from payattn.cost import layer_cost, module_cost
    from payattn.nn import Attention

    class ByName(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = Attention(16, 2, "efficient")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x=x)

    model = ByName().eval()
    found = module_cost(model, (torch.zeros(3, 8, 16),))
    assert found.attention_flops == 3 * layer_cost(model.attn, 8).attention_flops > 0
