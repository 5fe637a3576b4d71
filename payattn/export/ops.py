"""Read a .tflite flatbuffer's operators and enforce builtin-only.

An app that links the plain LiteRT runtime can run only builtin operators: a custom or Flex
(TensorFlow select) operator would need an extra delegate library. So every exported .tflite
is read back and any operator outside the builtin set fails the export, naming it, the
tensor it writes and the ONNX nodes it most likely comes from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ai_edge_litert import schema_py_generated as schema

from payattn.errors import PayattnError
from payattn.runtime.readers import check_tflite

if TYPE_CHECKING:  # only annotations: reading a .tflite (`payattn inspect`) never loads onnx
    import onnx

_BUILTIN_NAMES = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}


@dataclass(frozen=True)
class OperatorUse:
    """One operator instance: its name, whether it is builtin, and a tensor it writes."""

    name: str
    builtin: bool
    output: str


def _opcode_name(code: schema.OperatorCode) -> tuple[str, bool]:
    # Older files fill only the 8-bit deprecated field, newer ones both: the larger is right.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return (custom.decode(errors="replace") if custom else "CUSTOM"), False
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"), True


def read_operators(path: Path) -> list[OperatorUse]:
    """Every operator of every subgraph of a .tflite file, in execution order."""
    data = check_tflite(path, "pass a .tflite written by `payattn export`")
    model = schema.Model.GetRootAs(data, 0)
    codes = [_opcode_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    uses = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name, builtin = codes[op.OpcodeIndex()]
            output = b""
            if op.OutputsLength() and op.Outputs(0) >= 0:
                output = graph.Tensors(op.Outputs(0)).Name() or b""  # exports drop most names
            uses.append(OperatorUse(name, builtin, output.decode(errors="replace")))
    return uses


def operator_counts(uses: list[OperatorUse]) -> dict[str, int]:
    """Operator name -> number of instances, sorted by name."""
    return dict(sorted(Counter(u.name for u in uses).items()))


def onnx_operator_counts(graph: onnx.ModelProto) -> dict[str, int]:
    """ONNX op type -> number of nodes, sorted by name."""
    return dict(sorted(Counter(node.op_type for node in graph.graph.node).items()))


def require_builtin(path: Path, uses: list[OperatorUse], graph: onnx.ModelProto | None = None) -> None:
    """Fail unless every operator is builtin, naming each offender, the tensor it writes and,
    when `graph` is the source ONNX model, the ONNX nodes of the matching type (a Flex
    operator is named after the TensorFlow op it wraps, e.g. FlexErf for Erf)."""
    bad = sorted({(u.name, u.output) for u in uses if not u.builtin})
    if not bad:
        return
    found = []
    for name, output in bad:
        where = f"writes {output or '?'}"
        core = name.removeprefix("Flex").lower()
        nodes = [n.name or n.op_type for n in graph.graph.node if n.op_type.lower() == core] if graph else []
        if nodes:
            where += f"; from ONNX node {', '.join(nodes)}"
        found.append(f"{name} ({where})")
    raise PayattnError(
        f"{Path(path).name} contains non-builtin operators, which the plain LiteRT runtime "
        f"cannot run: {'; '.join(found)}. Express that operation with builtin TFLite "
        f"operations (see payattn/models.py and payattn/attention.py)"
    )
