"""Mechanism names, aliases and default heads, and the precision and converter names: the parsers of the names
commands take, light enough for the CLI, the report and devices."""

from __future__ import annotations

from collections.abc import Iterable

from payattn.errors import PayattnError
from payattn.runtime.formats import PRECISIONS, ROADS

MECHANISMS = ("standard", "optimised", "efficient", "super")
ALIASES = {"optimized": "optimised"}
# Efficient and super follow the paper's v1 and default to a single head.
DEFAULT_HEADS = {"standard": None, "optimised": None, "efficient": 1, "super": 1}


def canonical_mechanism(name: str) -> str:
    """Return the canonical mechanism name, accepting aliases; reject anything else clearly."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in MECHANISMS:
        valid = ", ".join(MECHANISMS + tuple(ALIASES))
        raise PayattnError(f"unknown mechanism {name!r}; valid mechanisms: {valid}")
    return key


def expand_mechanisms(spec: str) -> list[str]:
    """Parse 'all' or a comma-separated list of mechanism names, keeping the canonical order."""
    if spec.strip().lower() == "all":
        return list(MECHANISMS)
    names = [canonical_mechanism(part) for part in spec.split(",") if part.strip()]
    if not names:
        raise PayattnError("no mechanism given; use one of standard, optimised, efficient, super, all")
    return sorted(set(names), key=MECHANISMS.index)


def parse_names(names: str | Iterable[str], valid: tuple[str, ...], what: str) -> list[str]:
    """Validate names from `valid` ("all", or a list / comma-separated string), in `valid`'s
    order; an unknown or missing name is an error listing the valid ones."""
    items = names.split(",") if isinstance(names, str) else list(names)
    given = [n.strip().lower() for n in items if n.strip()]
    if given == ["all"]:
        return list(valid)
    unknown = [n for n in given if n not in valid]
    if unknown or not given:
        shown = ", ".join(map(repr, unknown)) if unknown else "none"
        raise PayattnError(f"unknown {what} {shown}; valid {what}s: {', '.join(valid)}, all")
    return [n for n in valid if n in given]


def parse_precisions(precisions: str | Iterable[str]) -> list[str]:
    return parse_names(precisions, PRECISIONS, "precision")


def parse_converters(converters: str | Iterable[str]) -> list[str]:
    """The roads asked for (payattn.runtime.formats.ROADS: every converter but torch.onnx)."""
    return parse_names(converters, ROADS, "converter")
