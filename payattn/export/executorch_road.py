"""PyTorch -> ExecuTorch (.pte) lowered to XNNPACK, fp32 and int8 (PT2E, XNNPACK quantizer).

The graph is the ONNX road's (onnx_graph.Unbatched: the model's own forward on one example,
[ℓ, d_m] activations). ExecuTorch 1.5.1's XNNPACK partitioner rejects five things in it, and
each rejected node cut the graph into another delegate segment run between portable kernels:

- aten.native_layer_norm: XNNPACK has no layer norm; it is decomposed here into mean, sub,
  mul, rsqrt, mul, add (the same formula, biased variance, eps inside the root). At small
  d_m each mean over a row is taken as a linear layer with a constant 1/d_m weight, one
  XNNPACK operator: in the pooling form below XNNPACK puts two reshapes and two transposes
  (to its NHWC layout and back) around every mean, 40 of mnist-tiny's 171 operators
  (LINEAR_MEAN_MAX_WIDTH);
- aten.mean.dim: XNNPACK averages only the two innermost dims of a 4D tensor (keepdim), so
  every mean (the pooling and the norms' own) is taken on the reduced values moved there;
- addmm whose weight is W^Q·scale and the `select` of pos_embed[0]: a weight computed in the
  graph is not a static param to the partitioner; constant propagation folds both first;
- aten.expand_copy: torch.matmul on rank-4 tensors exports as expand + view + bmm with
  expands to the shape they already have; they are removed (RemoveNoopExpand).

And one it accepts but computes differently: ExecuTorch's GELU visitor drops `approximate`,
so XNNPACK ran the exact (erf) GELU where the model has the tanh form (the 8.9e-4 logit
difference of the first look). GELU is decomposed into the tanh formula here, which XNNPACK
runs op by op, so the .pte computes the model's own maths.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from payattn.errors import PayattnError
from payattn.export.onnx_graph import Unbatched
from payattn.files import write_file_atomic
from payattn.models import Classifier

PTE_FILES = {"fp32": "{prefix}_fp32.pte", "int8": "{prefix}_int8.pte"}
# Why this road makes no file at the other precisions: `left_out` says it to the caller.
NOT_MADE = {
    "fp16": "XNNPACK's fp16 kernels run only on CPUs with native fp16 arithmetic (ARMv8.2+), "
            "not on the Pi 4 or x86",
    "dynamic-int8": "the int8 .pte (static activation ranges) covers weight-only int8's size gain",
}
XNNPACK_BACKEND = "XnnpackBackend"
# Up to this d_m a LayerNorm's means are linear layers (one XNNPACK operator each, not five):
# at d_m = 64 that took 6-7% off the model; at d_m = 256 each such layer took 2-3 µs by
# XNNPACK's clock, more than the five operators it replaces (scripts/bench_executorch_ops.py).
LINEAR_MEAN_MAX_WIDTH = 64
aten = torch.ops.aten


def left_out(precisions: list[str]) -> dict[str, str]:
    """Precision -> why this road makes no .pte for it, for the precisions asked for."""
    return {p: NOT_MADE.get(p, "unknown precision") for p in precisions if p not in PTE_FILES}


def convert(model: Classifier, example: Tensor, out_dir: Path, precisions: list[str],
            calibration: np.ndarray | None, name_prefix: str = "model") -> dict[str, Path]:
    """Write one .pte per precision this road makes (fp32, int8; see `left_out` for the
    rest) into `out_dir`; return precision -> path. int8 is calibrated on `calibration`
    (the task's own inputs, batch axis first, PyTorch layout)."""
    graph = Unbatched(copy.deepcopy(model)).eval().requires_grad_(False)  # constants, not parameters
    written = {}
    for precision in [p for p in precisions if p in PTE_FILES]:
        if precision == "int8":
            if calibration is None or not len(calibration):
                raise PayattnError("the int8 .pte needs calibration inputs; pass the task's training inputs")
            program = lower(quantized(graph, example, calibration))
        else:
            program = lower(torch.export.export(graph, (example,)))
        path = Path(out_dir) / PTE_FILES[precision].format(prefix=name_prefix)
        write_file_atomic(path, program.buffer)
        written[precision] = path
    return written


def quantized(graph: torch.nn.Module, example: Tensor, calibration: np.ndarray) -> torch.export.ExportedProgram:
    """`graph` with int8 weights (per channel) and activations (per tensor, ranges observed on
    `calibration`) as XNNPACK's quantizer annotates it, through PT2E prepare/convert."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(graph, (example,)).module(), quantizer)
    samples = torch.from_numpy(np.ascontiguousarray(calibration)).to(example.dtype)
    with torch.no_grad():
        for sample in samples:
            prepared(sample.unsqueeze(0))
    return torch.export.export(convert_pt2e(prepared), (example,))


def lower(program: torch.export.ExportedProgram) -> Any:
    """An exported program as an ExecuTorch program, every node XNNPACK takes in its delegate."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    with torch.no_grad():  # folded constants must be leaves: the lowering deep-copies them
        program = constant_prop_pass(program.run_decompositions(decompositions()))
        edge = to_edge_transform_and_lower(program, transform_passes=[remove_noop_expand],
                                           partitioner=[XnnpackPartitioner()])
        return edge.to_executorch()


def decompositions() -> dict[Any, Any]:
    """torch.export's core ATen table, with layer norm, mean and tanh GELU in forms XNNPACK takes."""
    table = torch.export.default_decompositions()
    del table[aten.linear.default]  # kept whole, as XNNPACK's own lowering keeps it: its weight a constant
    table[aten.native_layer_norm.default] = _layer_norm
    table[aten.mean.dim] = _mean
    table[aten.gelu.default] = _gelu
    table[aten.sum.dim_IntList] = _sum
    table[aten.unsqueeze.default] = lambda x, dim: x.reshape(_unsqueezed(x.shape, dim))
    table[aten.alias.default] = lambda x: x.reshape(x.shape)
    return table


def _mean_4d(x: Tensor, dims: list[int]) -> Tensor:
    """Mean over `dims` (kept as size 1), taken as XNNPACK's global average pooling takes it:
    the reduced values as the two innermost dims of a 4D tensor."""
    dims = sorted(d % x.dim() for d in dims)
    kept = [d for d in range(x.dim()) if d not in dims]
    moved = x.permute(*kept, *dims) if kept != list(range(len(kept))) else x
    rows = math.prod(x.shape[d] for d in kept)
    pooled = moved.reshape(1, rows, -1, 1).mean(dim=[2, 3], keepdim=True)  # [1, rows, 1, 1]
    return pooled.reshape([1 if d in dims else n for d, n in enumerate(x.shape)])


def _mean(x: Tensor, dims: list[int] | None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    dims = list(range(x.dim())) if not dims else [d % x.dim() for d in dims]
    if x.dim() == 4 and sorted(d % 4 for d in dims) == [2, 3] and keepdim and dtype is None:
        return NotImplemented  # already XNNPACK's form
    out = _mean_4d(x if dtype is None else x.to(dtype), dims)
    return out if keepdim else out.reshape([n for d, n in enumerate(x.shape) if d not in dims])


def _sum(x: Tensor, dims: list[int] | None, keepdim: bool = False, dtype: Any = None) -> Tensor:
    """A float sum as the mean times the count (XNNPACK has no sum)."""
    if not x.is_floating_point() or dtype is not None:
        return NotImplemented
    dims = list(range(x.dim())) if not dims else [d % x.dim() for d in dims]
    return _mean(x, dims, keepdim) * math.prod(x.shape[d] for d in dims)


def _unsqueezed(shape: torch.Size, dim: int) -> list[int]:
    """`shape` with a unit axis at `dim` (XNNPACK unsqueezes only the last axis, reshapes any)."""
    dims = list(shape)
    dims.insert(dim % (len(dims) + 1), 1)
    return dims


def _layer_norm(x: Tensor, shape: list[int], weight: Tensor | None, bias: Tensor | None,
                eps: float) -> tuple[Tensor, Tensor, Tensor]:
    dims = list(range(x.dim() - len(shape), x.dim()))
    average = partial(_mean_4d, dims=dims)
    if x.dim() == 2 and len(shape) == 1 and x.shape[1] <= LINEAR_MEAN_MAX_WIDTH:  # [ℓ, d_m] rows
        ones = torch.full((1, x.shape[1]), 1 / x.shape[1], dtype=x.dtype)
        average = partial(torch.nn.functional.linear, weight=ones)
    mean = average(x)
    centred = x - mean
    rstd = torch.rsqrt(average(centred * centred) + eps)
    out = centred * rstd
    out = out if weight is None else out * weight
    return (out if bias is None else out + bias), mean, rstd


def _gelu(x: Tensor, approximate: str = "none") -> Tensor:
    if approximate != "tanh":
        return NotImplemented  # XNNPACK's own GELU is the exact one
    inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + torch.tanh(inner))  # a float 1: an int one is a cast outside XNNPACK


def remove_noop_expand(graph_module: torch.fx.GraphModule) -> Any:
    """Drop expand_copy nodes whose input already has the expanded shape (torch.matmul's
    decomposition writes them); XNNPACK takes no expand, so each split the delegate."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    changed = False
    for node in list(graph_module.graph.nodes):
        if node.target == exir_ops.edge.aten.expand_copy.default:
            source = node.args[0]
            if tuple(source.meta["val"].shape) == tuple(node.meta["val"].shape):
                node.replace_all_uses_with(source)
                graph_module.graph.erase_node(node)
                changed = True
    graph_module.recompile()
    return PassResult(graph_module, changed)


def delegation(program: Path | bytes | Any) -> dict[str, Any]:
    """Whether XNNPACK takes the whole graph of a .pte (a path, its bytes, or an ExecuTorch
    program), in how many delegate segments, and which operators run outside on ExecuTorch's
    portable kernels: the shape of app.delegation for LiteRT."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall

    data = Path(program).read_bytes() if isinstance(program, (str, Path)) else getattr(program, "buffer", program)
    plan = deserialize_pte_binary(data).program.execution_plan[0]
    calls = [i.instr_args for chain in plan.chains for i in chain.instructions]
    segments = [c for c in calls if isinstance(c, DelegateCall)
                and plan.delegates[c.delegate_index].id == XNNPACK_BACKEND]
    kernels = Counter(_op_name(plan.operators[c.op_index]) for c in calls if isinstance(c, KernelCall))
    return {"accelerator": "XNNPACK", "fully_delegated": bool(segments) and not kernels,
            "partitions": len(segments), "nodes": len(calls), "outside": dict(sorted(kernels.items()))}


def _op_name(operator: Any) -> str:
    return f"{operator.name}.{operator.overload}" if operator.overload else operator.name
