"""Check documents against payattn's published JSON Schema files with the `jsonschema` package:
an implementation independent of payattn.runtime.formats."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


def _schemas() -> dict[str, dict[str, Any]]:
    folder = resources.files("payattn.runtime") / "schemas"
    return {item.name: json.loads(item.read_text()) for item in folder.iterdir() if item.name.endswith(".json")}


SCHEMAS = _schemas()
REGISTRY = Registry().with_resources((name, Resource.from_contents(doc)) for name, doc in SCHEMAS.items())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[f"{name}.schema.json"], registry=REGISTRY,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(document: Any, name: str) -> None:
    """Fail with every error jsonschema finds in `document` against `name`.schema.json."""
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
              for e in validator(name).iter_errors(document)]
    assert not errors, errors
