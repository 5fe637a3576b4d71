"""payattn.nn: the four mechanisms as drop-in layers for batch-first models, the same maths as
payattn's own layers, equal to nn.MultiheadAttention for the standard mechanism, costed by
payattn.cost, and exportable to ONNX."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from payattn import attention, models
from payattn.config import resolve_config
from payattn.cost import layer_cost, module_cost
from payattn.errors import PayattnError
from payattn.nn import Attention, Block

MECHS = ["standard", "optimised", "efficient", "super"]
ELL, D = 8, 16


def fixed(mechanism: str) -> int | None:
    """Super needs a fixed context length; the others are built for any length here."""
    return ELL if mechanism == "super" else None


def padded_mask(batch: int = 3) -> torch.Tensor:
    """[B, ℓ] bool, True at padding: each row a different number of real tokens."""
    lengths = torch.tensor([ELL, ELL - 3, 2][:batch])
    return torch.arange(ELL)[None, :] >= lengths[:, None]


def scramble_align(layer: attention.Attention) -> None:
    """Move super's W^A away from the identity so that it matters in a comparison."""
    if layer.w_a is not None:
        layer.w_a.data = torch.randn_like(layer.w_a)


@pytest.mark.parametrize("mechanism", MECHS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cls", [Attention, Block])
def test_shape_is_preserved(cls, mechanism: str, masked: bool) -> None:
    torch.manual_seed(0)
    layer = cls(D, 2, mechanism=mechanism, context_length=fixed(mechanism))
    x = torch.randn(3, ELL, D)
    out = layer(x, key_padding_mask=padded_mask() if masked else None)
    assert isinstance(out, torch.Tensor) and out.shape == (3, ELL, D)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("mechanism", MECHS)
def test_same_maths_as_payattn_attention(mechanism: str) -> None:
    """The public layer is payattn's one implementation: same weights, same outputs, and a
    bool mask means what payattn's float padding means."""
    torch.manual_seed(1)
    public = Attention(D, 2, mechanism=mechanism, context_length=ELL)
    scramble_align(public)
    inner = attention.build_attention(mechanism, D, 2, ELL)
    inner.load_state_dict(public.state_dict())
    assert isinstance(public, attention.Attention) and public.mechanism == mechanism
    x, mask = torch.randn(3, ELL, D), padded_mask()
    torch.testing.assert_close(public(x), inner(x), rtol=0, atol=0)
    torch.testing.assert_close(public(x, key_padding_mask=mask), inner(x, mask.float()), rtol=0, atol=0)


@pytest.mark.parametrize("mechanism", MECHS)
def test_block_is_the_block_of_payattn_models(mechanism: str) -> None:
    """A block of a payattn model loads into the public Block (same keys) and gives the same
    outputs, and both are x + Attn(LN(x)), then x + MLP(LN(x)) with the tanh GELU."""
    cfg = resolve_config("mnist-tiny", mechanism)
    torch.manual_seed(2)
    own = models.Block(cfg)
    scramble_align(own.attn)
    for norm in (own.norm1, own.norm2):  # unlike at init, the two norms differ
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    public = Block(cfg.d_model, cfg.heads, mechanism, mlp_dim=cfg.mlp_dim, context_length=cfg.context_length)
    public.load_state_dict(own.state_dict())
    x = torch.randn(2, cfg.context_length, cfg.d_model)
    torch.testing.assert_close(public(x), own(x), rtol=0, atol=0)
    h = x + public.attn(public.norm1(x))
    mlp = public.mlp
    expected = h + mlp[2](nn.functional.gelu(mlp[0](public.norm2(h)), approximate="tanh"))
    torch.testing.assert_close(public(x), expected, rtol=1e-5, atol=1e-5)


def test_block_defaults() -> None:
    block = Block(D, mechanism="efficient")
    assert block.mlp[0].out_features == 4 * D and block.attn.heads == 1 and block.attn.context_length is None
    with pytest.raises(PayattnError, match="dropout must be in"):
        Block(D, dropout=1.5)


def test_dropout_acts_only_while_training_and_leaves_no_operator_otherwise() -> None:
    torch.manual_seed(9)
    x = torch.randn(2, ELL, D)
    block = Block(D, 2, dropout=0.5)
    assert not torch.equal(block(x), block(x))
    block.eval()
    torch.testing.assert_close(block(x), block(x), rtol=0, atol=0)
    for layer in (block, Block(D, 2)):  # what the ExecuTorch and litert-torch roads export
        graph = torch.export.export(layer, (x,)).graph
        assert not [node for node in graph.nodes if "dropout" in str(node.target)]


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("bias", [True, False])
def test_standard_equals_torch_multihead_attention(heads: int, bias: bool) -> None:
    """nn.MultiheadAttention's weights copied over (in_proj split into W^Q, W^K, W^V;
    out_proj as W^O) give the same outputs, with and without a padding mask."""
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(D, heads, bias=bias, batch_first=True).eval()
    if bias:  # torch starts the biases at zero; make them count
        nn.init.normal_(mha.in_proj_bias)
        nn.init.normal_(mha.out_proj.bias)
    attn = Attention(D, heads, mechanism="standard", bias=bias).eval()
    w_q, w_k, w_v = mha.in_proj_weight.detach().chunk(3)
    attn.w_q.weight.data, attn.w_k.weight.data, attn.w_v.weight.data = w_q, w_k, w_v
    attn.w_o.weight.data = mha.out_proj.weight.detach().clone()
    if bias:
        b_q, b_k, b_v = mha.in_proj_bias.detach().chunk(3)
        attn.w_q.bias.data, attn.w_k.bias.data, attn.w_v.bias.data = b_q, b_k, b_v
        attn.w_o.bias.data = mha.out_proj.bias.detach().clone()
    x, mask = torch.randn(3, ELL, D), padded_mask()
    with torch.no_grad():
        for m in (None, mask):
            expected, _ = mha(x, x, x, key_padding_mask=m, need_weights=False)
            torch.testing.assert_close(attn(x, key_padding_mask=m), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mechanism", MECHS)
@pytest.mark.parametrize("cls", [Attention, Block])
def test_causal_output_ignores_later_tokens(cls, mechanism: str) -> None:
    torch.manual_seed(4)
    layer = cls(D, 2, mechanism=mechanism, context_length=ELL, causal=True)
    scramble_align(layer if cls is Attention else layer.attn)
    x = torch.randn(2, ELL, D)
    for t in range(ELL - 1):
        y = x.clone()
        y[:, t + 1:] = torch.randn(2, ELL - 1 - t, D)
        torch.testing.assert_close(layer(y)[:, : t + 1], layer(x)[:, : t + 1])
        assert not torch.allclose(layer(y)[:, t + 1:], layer(x)[:, t + 1:])


@pytest.mark.parametrize("mechanism", MECHS)
def test_padding_hides_padded_tokens(mechanism: str) -> None:
    torch.manual_seed(5)
    layer = Attention(D, 2, mechanism=mechanism, context_length=ELL)
    scramble_align(layer)
    x, mask = torch.randn(3, ELL, D), padded_mask()
    y = torch.where(mask[..., None], torch.randn_like(x), x)
    keep = ~mask
    torch.testing.assert_close(layer(y, key_padding_mask=mask)[keep], layer(x, key_padding_mask=mask)[keep])
    assert not torch.allclose(layer(y)[keep], layer(x)[keep])


@pytest.mark.parametrize("cls", [Attention, Block])
@pytest.mark.parametrize("mechanism,causal,why", [("super", False, "W\\^A mixes tokens and is ℓ×ℓ"),
                                                  ("standard", True, "mask is a constant ℓ×ℓ")])
def test_fixed_length_mechanisms_without_a_length_are_a_clear_error(cls, mechanism, causal, why) -> None:
    expected = f"needs a fixed context_length \\(its {why}.*pass context_length="
    with pytest.raises(PayattnError, match=expected):
        cls(D, mechanism=mechanism, causal=causal)


def test_any_length_where_the_length_does_not_matter_and_only_the_built_one_for_super() -> None:
    for mechanism in ("standard", "optimised", "efficient"):
        layer = Attention(D, 2, mechanism=mechanism)
        assert layer(torch.randn(2, 5, D)).shape == (2, 5, D)
        assert layer(torch.randn(2, 11, D)).shape == (2, 11, D)
    for cls in (Attention, Block):
        layer = cls(D, mechanism="super", context_length=ELL)
        with pytest.raises(PayattnError, match=f"built for context length {ELL}, got an input of length 5"):
            layer(torch.randn(2, 5, D))


def test_bad_inputs_are_clear_errors() -> None:
    layer = Attention(D, 2)
    x = torch.randn(3, ELL, D)
    with pytest.raises(PayattnError, match="must be a bool tensor.*mask.bool\\(\\)"):
        layer(x, key_padding_mask=padded_mask().float())
    with pytest.raises(PayattnError, match=r"key_padding_mask has shape \[3, 7\].*needs \[3, 8\]"):
        layer(x, key_padding_mask=padded_mask()[:, :7])
    with pytest.raises(PayattnError, match=rf"expected an input of shape \[B, ℓ, {D}\].*got \[3, 8, 12\]"):
        layer(torch.randn(3, ELL, 12))
    with pytest.raises(PayattnError, match="unknown mechanism 'fast'"):
        Attention(D, mechanism="fast")
    assert Attention(D, mechanism="Optimized").mechanism == "optimised"
    assert Attention(D, mechanism="super", context_length=ELL).heads == 1


class TinyClassifier(nn.Module):
    """A user's own model: embedding -> two payattn blocks -> masked mean pool -> linear."""

    def __init__(self, mechanisms: tuple[str, str], vocab: int = 12, classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, D)
        self.pos = nn.Parameter(torch.randn(ELL, D) * 0.02)
        self.blocks = nn.ModuleList(Block(D, 2, mechanism=m, context_length=ELL) for m in mechanisms)
        self.head = nn.Linear(D, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens == 0
        x = self.embed(tokens) + self.pos
        for block in self.blocks:
            x = block(x, key_padding_mask=mask)
        keep = (~mask).unsqueeze(-1).float()
        return self.head((x * keep).sum(1) / keep.sum(1))


def toy_batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token sequences; the label says whether token 1 comes before token 2."""
    g = torch.Generator().manual_seed(6)
    tokens = torch.randint(3, 12, (n, ELL), generator=g)
    first, second = torch.randint(0, 5, (n,), generator=g), torch.randint(0, 5, (n,), generator=g)
    rows = torch.arange(n)
    tokens[rows, first], tokens[rows, (first + 1 + second) % 6] = 1, 2
    labels = ((tokens == 1).int().argmax(1) < (tokens == 2).int().argmax(1)).long()
    tokens[rows[::2], 6:] = 0  # half the rows padded
    return tokens, labels


def test_a_user_model_trains_and_payattn_finds_its_attention() -> None:
    torch.manual_seed(7)
    model = TinyClassifier(("super", "efficient"))
    tokens, labels = toy_batch()
    w_q = model.blocks[0].attn.w_q.weight.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(tokens), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert not torch.equal(model.blocks[0].attn.w_q.weight, w_q)

    assert attention.mechanisms_in(model) == ["efficient", "super"]
    batch = tokens[:4]
    found = module_cost(model.eval(), (batch,))
    blocks = [layer_cost(block) for block in model.blocks]
    assert found.params == sum(p.numel() for p in model.parameters())
    assert found.attention_params == sum(c.attention_params for c in blocks)
    assert found.attention_flops == len(batch) * sum(c.attention_flops for c in blocks)
    head = 2 * D * 2  # the classifier's matrix product; pooling and the lookup have none
    assert found.flops == len(batch) * (sum(c.flops for c in blocks) + head)


@pytest.mark.parametrize("mechanism", MECHS)
@pytest.mark.parametrize("cls", [Attention, Block])
def test_layer_cost_agrees_with_module_cost_and_the_real_parameters(cls, mechanism: str) -> None:
    layer = cls(D, 2, mechanism=mechanism, context_length=fixed(mechanism), bias=mechanism != "optimised")
    x = torch.randn(1, ELL, D)
    closed, walked = layer_cost(layer, ELL), module_cost(layer, (x,))
    assert closed == walked
    assert closed.params == sum(p.numel() for p in layer.parameters())


def test_layer_cost_needs_a_length_it_can_use() -> None:
    with pytest.raises(PayattnError, match="takes any length.*pass context_length="):
        layer_cost(Attention(D, 2))
    with pytest.raises(PayattnError, match="built for context length 8, not 5"):
        layer_cost(Attention(D, mechanism="super", context_length=ELL), 5)
    with pytest.raises(PayattnError, match="takes a payattn attention layer or block, got Linear"):
        layer_cost(nn.Linear(D, D), ELL)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("mechanism", ["standard", "super"])
def test_layer_exports_to_onnx(tmp_path, mechanism: str) -> None:
    """A quick check that torch.onnx.export takes the layer with its mask as a real input:
    ONNX Runtime gives PyTorch's outputs on inputs and a mask other than the traced ones."""
    import onnxruntime as ort

    torch.manual_seed(8)
    layer = Attention(D, 2, mechanism=mechanism, context_length=ELL).eval()
    scramble_align(layer)
    path = tmp_path / "attn.onnx"
    traced = (torch.randn(3, ELL, D), torch.zeros(3, ELL, dtype=torch.bool))
    torch.onnx.export(layer, traced, str(path), dynamo=False, opset_version=20,
                      input_names=["x", "key_padding_mask"], output_names=["out"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, mask = torch.randn(3, ELL, D), padded_mask()
    (out,) = session.run(None, {"x": x.numpy(), "key_padding_mask": mask.numpy()})
    with torch.no_grad():
        expected = layer(x, key_padding_mask=mask)
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-5, atol=1e-5)


def test_the_parameter_table_in_the_docs_is_what_the_layers_have() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "nn.md").read_text()
    row = r"^\| `((?:nn\.MultiheadAttention|Attention)\(.*\))` \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \|$"
    rows = re.findall(row, page, re.M)
    assert len(rows) == 6
    mha = sum(p.numel() for p in nn.MultiheadAttention(64, 4).parameters())
    for call, with_bias, without, ratio in rows:
        for bias, shown in ((True, with_bias), (False, without)):
            layer = eval(f"{call[:-1]}, bias={bias})", {"nn": nn, "Attention": Attention})
            count = sum(p.numel() for p in layer.parameters())
            assert count == int(shown.replace(",", "")), call
            if bias:
                assert f"{count / mha:.2f}" == ratio, call
