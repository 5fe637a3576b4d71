"""Check a flatbuffer's structure before any native code reads it.

LiteRT's `Interpreter` builds its model without the flatbuffers verifier, so a .tflite whose
offsets point outside the file makes it read memory it does not own: a crash, not an error.
`check` walks every table, vector, string and union the file holds, as the C++ verifier
does, and fails with the first offset or length the file does not have. It knows the schema
from the generated Python code the project reads the files with (`schema_py_generated`,
MediaPipe's metadata schema): each accessor there names its vtable slot and what it reads.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cache
from types import ModuleType

MAX_DEPTH = 64  # the C++ verifier's defaults
MAX_TABLES = 1_000_000
_SIZES = {"Bool": 1, "Uint8": 1, "Int8": 1, "Uint16": 2, "Int16": 2, "Uint32": 4, "Int32": 4,
          "Float32": 4, "Uint64": 8, "Int64": 8, "Float64": 8}


class Malformed(ValueError):
    """The bytes are not a well-formed flatbuffer; the message says where."""


@dataclass(frozen=True)
class Field:
    """One field of a table: its vtable slot, what it holds (scalar, struct, string, table,
    union, or a vector of scalars, structs, strings or tables), its (element) size and the
    table, struct or union type it names."""

    name: str
    slot: int
    kind: str
    size: int = 0
    target: str = ""


_METHOD = re.compile(r"    # \w+\n    def (\w+)\(self(, j)?\):\n(.*?)(?=\n    # |\Z)", re.S)


@cache
def _classes(module: ModuleType) -> dict[str, str]:
    """The source of each class of a generated module (read once: inspect.getsource on a class
    parses the whole 20,000-line module every time)."""
    chunks = re.split(r"^class (\w+)\(object\):\n", inspect.getsource(module), flags=re.M)
    return dict(zip(chunks[1::2], chunks[2::2]))


@cache
def fields(module: ModuleType, table: str) -> tuple[Field, ...]:
    """The fields of a generated table class, read from its accessors' code."""
    found = []
    for name, is_vector, body in _METHOD.findall(_classes(module).get(table, "")):
        slot = re.search(r"self\._tab\.Offset\((\d+)\)", body)
        if slot is None or name.endswith(("Length", "AsNumpy", "IsNone", "NestedRoot")):
            continue
        found.append(Field(name, int(slot.group(1)), *_kind(module, table, name, body, bool(is_vector))))
    return tuple(found)


def _kind(module: ModuleType, table: str, name: str, body: str, vector: bool) -> tuple[str, int, str]:
    target = re.search(r"obj = (\w+)\(\)", body)
    scalar = re.search(r"number_types\.(\w+)Flags, [ao] \+", body)
    if vector:
        if "Indirect(x)" in body:
            return "tables", 4, target.group(1)  # type: ignore[union-attr]
        if "String(a" in body:
            return "strings", 4, ""
        if target:
            return "structs", int(re.search(r"\(j\) \* (\d+)", body).group(1)), target.group(1)  # type: ignore[union-attr]
        return "vector", _SIZES[scalar.group(1)], ""  # type: ignore[union-attr]
    if "Union(obj" in body:
        creator = re.search(rf"(\w+)Creator\(self\.\w+Type, \w+\.{name}\(\)\)",
                            _classes(module)[table + "T"])
        return "union", 4, creator.group(1)  # type: ignore[union-attr]
    if "String(o" in body:
        return "string", 4, ""
    if "Indirect(o" in body:
        return "table", 4, target.group(1)  # type: ignore[union-attr]
    if target:
        return "struct", getattr(module, target.group(1)).SizeOf(), target.group(1)
    return "scalar", _SIZES[scalar.group(1)], ""


class _Walker:
    """One pass over a buffer: every offset and length checked before it is followed."""

    def __init__(self, data: bytes, module: ModuleType) -> None:
        self.data, self.module, self.tables = data, module, 0

    def need(self, at: int, size: int, what: str) -> None:
        if at < 0 or size < 0 or at + size > len(self.data):
            raise Malformed(f"{what} at byte {at} ({size} bytes) lies outside the file's "
                            f"{len(self.data)} bytes")

    def uint(self, at: int, size: int, what: str, signed: bool = False) -> int:
        self.need(at, size, what)
        return int.from_bytes(self.data[at:at + size], "little", signed=signed)

    def follow(self, at: int, what: str) -> int:
        """The position an unsigned 32-bit offset stored at `at` points to."""
        target = at + self.uint(at, 4, what)
        self.need(target, 4, what)
        if target % 4:
            raise Malformed(f"{what} at byte {target} is not 4-byte aligned")
        return target

    def vector(self, at: int, size: int, what: str) -> tuple[int, int]:
        start = self.follow(at, what)
        count = self.uint(start, 4, what)
        self.need(start + 4, count * size, f"{what} of {count} items")
        return start + 4, count

    def string(self, at: int, what: str) -> None:
        start, count = self.vector(at, 1, what)
        if self.uint(start + count, 1, what) != 0:
            raise Malformed(f"{what} at byte {start} has no terminating zero")

    def table(self, at: int, name: str, depth: int = 0) -> None:
        self.tables += 1
        if depth > MAX_DEPTH or self.tables > MAX_TABLES:
            raise Malformed(f"{name} at byte {at} is nested deeper or more often than a model can be")
        vtable = at - self.uint(at, 4, name, signed=True)
        vsize, size = self.uint(vtable, 2, f"{name}'s vtable"), self.uint(vtable + 2, 2, f"{name}'s vtable")
        if vsize < 4 or vsize % 2 or vtable % 2:
            raise Malformed(f"{name} at byte {at} has a malformed vtable (size {vsize})")
        self.need(vtable, vsize, f"{name}'s vtable")
        self.need(at, size, name)
        for field in (fields(self.module, name) if hasattr(self.module, name + "T") else ()):
            offset = self.uint(vtable + field.slot, 2, name) if field.slot + 2 <= vsize else 0
            if offset:
                self.field(at, offset, field, f"{name}.{field.name}", depth)

    def field(self, table: int, offset: int, field: Field, what: str, depth: int) -> None:
        at = table + offset
        if field.kind in ("scalar", "struct"):
            self.need(at, field.size, what)
        elif field.kind == "string":
            self.string(at, what)
        elif field.kind == "table":
            self.table(self.follow(at, what), field.target, depth + 1)
        elif field.kind == "union":
            self.union(table, at, field, what, depth)
        else:
            start, count = self.vector(at, field.size, what)
            for i in range(count if field.kind in ("tables", "strings") else 0):
                if field.kind == "strings":
                    self.string(start + 4 * i, f"{what}[{i}]")
                else:
                    self.table(self.follow(start + 4 * i, f"{what}[{i}]"), field.target, depth + 1)

    def union(self, table: int, at: int, field: Field, what: str, depth: int) -> None:
        """A union's table, typed by the `...Type` field beside it (an unknown type: header only)."""
        reader = getattr(self.module, what.split(".")[0])()
        reader.Init(self.data, table)
        kind = getattr(reader, field.name + "Type")()
        members = {v: k for k, v in vars(getattr(self.module, field.target)).items() if not k.startswith("_")}
        member = members.get(kind, "")
        self.table(self.follow(at, what), member if hasattr(self.module, member) else "?", depth + 1)


def check(data: bytes, module: ModuleType, root: str, identifier: bytes) -> None:
    """Raise Malformed unless `data` is a `root` flatbuffer with `identifier` whose every offset
    and length stays inside it."""
    if len(data) < 8 or data[4:8] != identifier:
        raise Malformed(f"the file has no {identifier.decode()} identifier")
    walker = _Walker(data, module)
    walker.table(walker.follow(0, root), root)
