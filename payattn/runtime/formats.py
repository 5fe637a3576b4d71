"""The file formats stages exchange — result line, manifest, job — each defined once.

The definitions are the JSON Schema files in `schemas/` (published with the package, so any
tool can check payattn's files). This module reads them and checks documents against them
with the subset of JSON Schema they use, since the device side has no `jsonschema`. Writers
check strictly (no key the schema does not name); readers check tolerantly (unknown keys are
ignored, so a line from a newer payattn still reads). The names shared by several formats —
precisions, formats, runtimes, device kinds — are read from `schemas/common.schema.json`.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from payattn.runtime.errors import RuntimeJobError

SCHEMA_DIR = Path(__file__).with_name("schemas")
_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
               "integer": int, "number": (int, float)}


@cache
def schema_file(name: str) -> dict[str, Any]:
    """A schema document of `schemas/` by file name, e.g. 'result.schema.json'."""
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def _enum(definition: str) -> tuple[str, ...]:
    return tuple(schema_file("common.schema.json")["$defs"][definition]["enum"])


PRECISIONS = _enum("precision")
FORMATS = _enum("format")
CONVERTERS = _enum("converter")
ONNX_CONVERTER = "torch.onnx"  # writes model.onnx on every export; the others are roads to choose
ROADS = tuple(c for c in CONVERTERS if c != ONNX_CONVERTER)
# Before manifests named converters, each format had one (and a .pte has only ever had one):
# what a tolerant reader assumes.
FIRST_CONVERTER = {"onnx": ONNX_CONVERTER, "tflite": "onnx2tf", "pte": "executorch"}
RUNTIMES = _enum("runtime")
MEASURED_BY = (*RUNTIMES, "benchmark_model")  # what may time a result line (see measured_by)
DEVICE_KINDS = _enum("device_kind")
ORT_LEVELS = _enum("ort_level")
INPUT_DTYPES = _enum("input_dtype")


def converter_of(entry: dict[str, Any]) -> str | None:
    """The converter that wrote a manifest artifact entry's file (older manifests name none)."""
    return entry.get("converter") or FIRST_CONVERTER.get(entry.get("format", ""))


class Format:
    """One file format: its schema file, its identifier (the `schema` key's value, if it has one)."""

    def __init__(self, name: str, what: str) -> None:
        self.file = f"{name}.schema.json"
        self.what = what

    @property
    def schema(self) -> dict[str, Any]:
        return schema_file(self.file)

    @property
    def id(self) -> str | None:
        return self.schema["properties"].get("schema", {}).get("const")

    def problem(self, document: Any, strict: bool = True) -> str | None:
        """What is wrong with `document`, naming the key; None when it follows the format."""
        return _problem(document, self.schema, self.file, "", strict)

    def check(self, document: Any, strict: bool = True, where: str | None = None) -> None:
        """Raise RuntimeJobError naming `where` (default: the format) and the key at fault."""
        problem = self.problem(document, strict)
        if problem:
            raise RuntimeJobError(f"{where or self.what}: {problem}")


RESULT = Format("result", "result line")
MANIFEST = Format("manifest", "manifest")
JOB = Format("job", "job")
PARITY = Format("parity", "parity line")
DEFAULT_GRAPH_OPTIMIZATION = JOB.schema["properties"]["graph_optimization"]["default"]


def _resolve(ref: str, base: str) -> tuple[dict[str, Any], str]:
    file, _, pointer = ref.partition("#")
    file = file or base
    node: Any = schema_file(file)
    for part in filter(None, pointer.split("/")):
        node = node[part]
    return node, file


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for name in ("null", "integer", "number", "string", "array", "object"):
        if isinstance(value, _JSON_TYPES[name]):
            return name
    return type(value).__name__


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    return isinstance(value, _JSON_TYPES[kind])


def _choices(schema: dict[str, Any], base: str) -> list[Any]:
    """The values an enum, a const or an anyOf of those allows (for the error message)."""
    if "$ref" in schema:
        return _choices(*_resolve(schema["$ref"], base))
    if "const" in schema:
        return [schema["const"]]
    if "anyOf" in schema:
        return [value for option in schema["anyOf"] for value in _choices(option, base)]
    return list(schema.get("enum", []))


def _problem(value: Any, schema: dict[str, Any], base: str, key: str, strict: bool) -> str | None:
    if "$ref" in schema:
        target, file = _resolve(schema["$ref"], base)
        return _problem(value, target, file, key, strict)
    name = f"key {key!r}" if key else "the document"
    if "anyOf" in schema:
        if all(_problem(value, option, base, key, strict) for option in schema["anyOf"]):
            return f"{name} must be one of {', '.join(map(str, _choices(schema, base)))}, got {value!r}"
        return None
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(_is(value, kind) for kind in kinds):
        return f"{name} must be {' or '.join(kinds)}, got {_type_name(value)} {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}"
    if "const" in schema and value != schema["const"]:
        return f"{name} must be {schema['const']!r}, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{name} must be one of {', '.join(map(str, schema['enum']))}, got {value!r}"
    if isinstance(value, dict):
        return _object_problem(value, schema, base, key, strict)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{name} must have at least {schema['minItems']} item(s)"
        items = schema.get("items")
        for index, item in enumerate(value if items else ()):
            problem = _problem(item, items, base, f"{key}[{index}]", strict)
            if problem:
                return problem
        return None
    if _is(value, "number"):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            bounds = " and ".join(f"{sign} {schema[k]}" for k, sign in (("minimum", "≥"), ("maximum", "≤"))
                                  if k in schema)
            return f"{name} must be {bounds}, got {value!r}"
    if isinstance(value, str):
        if schema.get("format") == "date-time" and not _is_date_time(value):
            return f"{name} must be an ISO 8601 date-time, got {value!r}"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{name} must match {schema['pattern']}, got {value!r}"
    return None


def _object_problem(value: dict[str, Any], schema: dict[str, Any], base: str, key: str,
                    strict: bool) -> str | None:
    prefix = f"{key}." if key else ""
    missing = [k for k in schema.get("required", ()) if k not in value]
    if missing:
        return f"key {prefix + missing[0]!r} is missing"
    properties, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
    for k, item in value.items():
        if k in properties:
            problem = _problem(item, properties[k], base, prefix + k, strict)
        elif extra is False:
            title = schema_file(base).get("title", base).split(":")[0]
            problem = f"key {prefix + k!r} is not in {title}" if strict else None
        elif isinstance(extra, dict):
            problem = _problem(item, extra, base, prefix + k, strict)
        else:
            problem = None
        if problem:
            return problem
    return None


def _is_date_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text or " " in text
