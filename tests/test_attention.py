"""The four mechanisms against PAPER.md's formulas, written out head by head."""

import math

import pytest
import torch

from payattn.attention import build_attention
from payattn.errors import PayattnError
from payattn.mechanisms import canonical_mechanism, expand_mechanisms
from payattn.cost import attention_params

MECHS = ["standard", "optimised", "efficient", "super"]


def reference(layer, x: torch.Tensor, mechanism: str) -> torch.Tensor:
    """O = [H_1 … H_h] W^O with H_i = softmax(Q_i K_i^T / sqrt(d_k)) V_i, for one sequence."""
    h, dk = layer.heads, layer.head_dim
    wq, wo = layer.w_q, layer.w_o
    heads = []
    for i in range(h):
        cols = slice(i * dk, (i + 1) * dk)
        q_i = wq(x)[:, cols]
        k_i = layer.w_k(x)[:, cols] if mechanism in ("standard", "optimised") else x[:, cols]
        v_i = layer.w_v(x)[:, cols] if mechanism == "standard" else x[:, cols]
        if mechanism == "super":
            v_i = layer.w_a @ v_i
        s_i = torch.softmax(q_i @ k_i.T / math.sqrt(dk), dim=-1)
        heads.append(s_i @ v_i)
    return wo(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("mechanism", MECHS)
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_matches_paper_formula(mechanism: str, heads: int) -> None:
    torch.manual_seed(0)
    layer = build_attention(mechanism, 16, heads, context_length=5)
    if layer.w_a is not None:
        layer.w_a.data += 0.1 * torch.randn(5, 5)  # move away from identity so W^A matters
    x = torch.randn(3, 5, 16)
    out = layer(x)
    for b in range(3):
        torch.testing.assert_close(out[b], reference(layer, x[b], mechanism), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mechanism", MECHS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d_model,heads,ell", [(8, 1, 3), (16, 4, 16), (24, 3, 9), (64, 8, 7), (32, 4, 32)])
def test_parameter_count_matches_closed_form(mechanism, bias, d_model, heads, ell) -> None:
    layer = build_attention(mechanism, d_model, heads, ell, bias=bias)
    real = sum(p.numel() for p in layer.parameters())
    assert real == attention_params(mechanism, d_model, ell, bias)


def test_default_heads_follow_paper_v1() -> None:
    assert build_attention("efficient", 32, context_length=4).heads == 1
    assert build_attention("super", 32, context_length=4).heads == 1


def test_super_starts_as_efficient() -> None:
    torch.manual_seed(1)
    sup = build_attention("super", 16, 2, 6)
    eff = build_attention("efficient", 16, 2, 6)
    eff.load_state_dict({k: v for k, v in sup.state_dict().items() if k != "w_a"})
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(sup(x), eff(x))


@pytest.mark.parametrize("mechanism", MECHS)
def test_causal_leaks_nothing(mechanism: str) -> None:
    """Output at position t is unchanged when inputs after t change (W^A masked too)."""
    torch.manual_seed(2)
    layer = build_attention(mechanism, 16, 2, 8, causal=True)
    if layer.w_a is not None:
        layer.w_a.data = torch.randn(8, 8)  # a full matrix: only the mask can stop the leak
    x = torch.randn(1, 8, 16)
    for t in range(7):
        y = x.clone()
        y[:, t + 1:] = torch.randn(1, 7 - t, 16)
        torch.testing.assert_close(layer(x)[:, : t + 1], layer(y)[:, : t + 1])


def test_non_causal_super_does_mix_future_tokens() -> None:
    """The causal test above can fail: without the mask, W^A carries later tokens backwards."""
    torch.manual_seed(3)
    layer = build_attention("super", 16, 1, 8)
    layer.w_a.data = torch.randn(8, 8)
    x = torch.randn(1, 8, 16)
    y = x.clone()
    y[:, -1] += 1.0
    assert not torch.allclose(layer(x)[:, 0], layer(y)[:, 0])


@pytest.mark.parametrize("mechanism", MECHS)
def test_key_padding_hides_padded_tokens(mechanism: str) -> None:
    torch.manual_seed(4)
    layer = build_attention(mechanism, 16, 2, 6)
    if layer.w_a is not None:
        layer.w_a.data = torch.randn(6, 6)
    x = torch.randn(1, 6, 16)
    pad = torch.tensor([[0, 0, 0, 0, 1, 1]], dtype=torch.float32)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(layer(x, pad)[:, :4], layer(y, pad)[:, :4])


@pytest.mark.parametrize("mechanism", ["super"])
def test_wrong_context_length_is_clear_error(mechanism: str) -> None:
    layer = build_attention(mechanism, 16, 1, 8)
    with pytest.raises(PayattnError, match="built for context length 8.*length 5"):
        layer(torch.randn(1, 5, 16))


def test_unknown_mechanism_lists_valid_names() -> None:
    with pytest.raises(PayattnError, match="unknown mechanism 'fast'.*standard, optimised, efficient, super"):
        build_attention("fast", 16)


def test_aliases_and_lists() -> None:
    assert canonical_mechanism("Optimized") == "optimised"
    assert expand_mechanisms("all") == MECHS
    assert expand_mechanisms("super,standard") == ["standard", "super"]


def test_heads_must_divide_width() -> None:
    with pytest.raises(PayattnError, match="divisible by heads=3"):
        build_attention("standard", 16, 3, 4)


def test_each_layer_names_its_mechanism_and_a_module_lists_its_layers():
    from torch import nn

    from payattn.attention import mechanisms_in

    for name in ("standard", "optimised", "efficient", "super"):
        assert build_attention(name, 8, 1, 4).mechanism == name
    model = nn.Sequential(build_attention("super", 8, 1, 4), nn.ReLU(), build_attention("standard", 8, 2, 4))
    assert mechanisms_in(model) == ["standard", "super"]
    assert mechanisms_in(nn.Linear(2, 2)) == []
