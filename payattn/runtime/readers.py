"""Validating readers for the files payattn reads but did not just write.

A manifest, a sweep index, a results file, reference arrays or a .tflite may be truncated,
damaged or crafted. Each reader here checks the file before anything trusts it and turns any
fault into one RuntimeJobError naming the file, what is wrong and the fix: never a traceback,
never unpickling, never a read of a length the file does not have, and never a hang on a
FIFO or a device handed over as a file. numpy and the standard library only: devices use it.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import stat
import tokenize  # numpy reads an old header's text with it
from pathlib import Path
from typing import Any

import numpy as np

from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.flatbuffer import Malformed, check

MAX_JSON_BYTES = 256 << 20  # far above any manifest, index or results file payattn writes
MAX_ARRAY_BYTES = 2 << 30
_NOT_REGULAR = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFSOCK: "a socket"}
_NUMERIC_KINDS = "biuf"  # bool, int, unsigned, float: nothing that holds Python objects


def regular_file(path: str | Path, what: str, fix: str) -> Path:
    """`path` if it is a regular file (symlinks followed); otherwise say what it is instead."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RuntimeJobError(f"{what} {path} does not exist; {fix}") from None
    except OSError as exc:
        raise RuntimeJobError(f"{what} {path} cannot be read ({exc.strerror}); {fix}") from None
    if stat.S_ISDIR(mode):
        raise RuntimeJobError(f"{what} {path} is a directory, not a file; {fix}")
    if not stat.S_ISREG(mode):
        kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "not a regular file")
        raise RuntimeJobError(f"{what} {path} is {kind}, not a regular file; {fix}")
    return path


def read_bytes(path: str | Path, what: str, fix: str, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes."""
    path = regular_file(path, what, fix)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise RuntimeJobError(f"{what} {path} cannot be read ({exc.strerror}); {fix}") from None
    if len(data) > limit:
        raise RuntimeJobError(f"{what} {path} is larger than {limit:,} bytes, far more than payattn "
                              f"writes; {fix}")
    return data


def parse_json(text: bytes | str, where: str, fix: str) -> Any:
    """One JSON document; `where` names the file (and line) in the error."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise RuntimeJobError(f"{where}: not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as exc:
        raise RuntimeJobError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} "
                              f"column {exc.colno}); {fix}") from None
    except (ValueError, RecursionError) as exc:
        raise RuntimeJobError(f"{where}: not valid JSON ({str(exc)[:80] or 'nested too deeply'}); "
                              f"{fix}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path, what: str, fix: str, kind: type = dict) -> Any:
    """A JSON file whose top level is a `kind` (an object by default)."""
    path = Path(path)
    document = parse_json(read_bytes(path, what, fix), f"{what} {path}", fix)
    if not isinstance(document, kind):
        expected = {dict: "a JSON object", list: "a JSON array"}.get(kind, kind.__name__)
        raise RuntimeJobError(f"{what} {path} holds {type(document).__name__} where {expected} "
                              f"belongs; {fix}")
    return document


def read_npy(path: str | Path, what: str, fix: str, limit: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """A numeric .npy array, its header checked against the file's length (no pickles, no
    object arrays, nothing read past the end)."""
    path = Path(path)
    data = read_bytes(path, what, fix, limit)
    where = f"{what} {path}"
    file = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(file)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unknown .npy format version {version}")
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = header(file)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, tokenize.TokenError) as exc:
        raise RuntimeJobError(f"{where} has no valid .npy header ({' '.join(str(exc).split())[:120]}); "
                              f"{fix}") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields or dtype.subdtype:
        raise RuntimeJobError(f"{where} holds {dtype} values, not numbers; {fix}")
    if any(d < 0 for d in shape):
        raise RuntimeJobError(f"{where} has the impossible shape {shape}; {fix}")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data) - file.tell():
        raise RuntimeJobError(f"{where}: its header promises {count * dtype.itemsize:,} bytes of "
                              f"{dtype} data for shape {shape}, but {len(data) - file.tell():,} "
                              f"follow; {fix}")
    array = np.frombuffer(data, dtype, count, file.tell())
    return array.reshape(shape, order="F" if fortran else "C")


def check_tflite(path: str | Path, fix: str) -> bytes:
    """The bytes of a .tflite whose flatbuffer structure and indices are sound, so LiteRT can be
    handed it without reading outside the file. A device whose LiteRT ships no schema reader
    (the 32-bit tflite-runtime) relies on the sha256 check against the manifest alone."""
    path = Path(path)
    data = read_bytes(path, "model file", fix, MAX_ARRAY_BYTES)
    schema = tflite_schema()
    if schema is None:
        return data
    try:
        check(data, schema, "Model", b"TFL3")
        tflite_indices(data, schema)
    except Malformed as exc:
        raise RuntimeJobError(f"cannot load {path} with litert: {exc}; it is not a sound TFLite "
                              f"flatbuffer: {fix}") from None
    return data


def tflite_schema() -> Any:
    """The generated TFLite schema module of the installed LiteRT, None where it has none."""
    for name in ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def tflite_indices(data: bytes, schema: Any) -> None:
    """Every index a model holds (operator code, tensor, buffer, subgraph) names something it
    has, and every buffer stored outside the flatbuffer lies inside the file."""
    model = schema.Model.GetRootAs(data, 0)
    codes, buffers = model.OperatorCodesLength(), model.BuffersLength()
    graphs = [model.Subgraphs(s) for s in range(model.SubgraphsLength())]
    for s, graph in enumerate(graphs):
        tensors = graph.TensorsLength()
        _within([graph.Inputs(i) for i in range(graph.InputsLength())], tensors, f"subgraph {s} input")
        _within([graph.Outputs(i) for i in range(graph.OutputsLength())], tensors, f"subgraph {s} output")
        for t in range(tensors):
            _within([graph.Tensors(t).Buffer()], buffers, f"tensor {t}'s buffer")
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            _within([op.OpcodeIndex()], codes, f"operator {o}'s code")
            used = [op.Inputs(i) for i in range(op.InputsLength())]
            used += [op.Outputs(i) for i in range(op.OutputsLength())]
            used += [op.Intermediates(i) for i in range(op.IntermediatesLength())]
            _within([i for i in used if i != -1], tensors, f"operator {o}'s tensor")
    for b in range(buffers):
        buffer = model.Buffers(b)
        if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > len(data):
            raise Malformed(f"buffer {b} lies at bytes {buffer.Offset()}+{buffer.Size()}, past the end")
    _within([model.Metadata(m).Buffer() for m in range(model.MetadataLength())], buffers, "metadata buffer")
    for d in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(d)
        if not signature.SignatureKey():
            raise Malformed(f"signature {d} has no key")
        _within([signature.SubgraphIndex()], len(graphs), f"signature {d}'s subgraph")
        tensors = graphs[signature.SubgraphIndex()].TensorsLength()
        maps = [signature.Inputs(i) for i in range(signature.InputsLength())]
        maps += [signature.Outputs(i) for i in range(signature.OutputsLength())]
        _within([m.TensorIndex() for m in maps], tensors, f"signature {d}'s tensor")


def _within(indices: list[int], count: int, what: str) -> None:
    bad = next((i for i in indices if not 0 <= i < count), None)
    if bad is not None:
        raise Malformed(f"{what} index {bad} is out of range (there are {count})")
