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


def parse_precisions(precisions: str | Iterable[str]) -> list[str]:
    """Validate precision names ("all" or a list / comma-separated string), in canonical order."""
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    names = [p.strip().lower() for p in items if p.strip()]
    if names == ["all"]:
        return list(PRECISIONS)
    unknown = [p for p in names if p not in PRECISIONS]
    if unknown or not names:
        given = ", ".join(map(repr, unknown)) if unknown else "none"
        raise PayattnError(f"unknown precision {given}; valid precisions: {', '.join(PRECISIONS)}, all")
    return [p for p in PRECISIONS if p in names]


def parse_converters(converters: str | Iterable[str]) -> list[str]:
    """Validate road names ("all" or a list / comma-separated string), in canonical order."""
    items = converters.split(",") if isinstance(converters, str) else list(converters)
    names = [c.strip().lower() for c in items if c.strip()]
    if names == ["all"]:
        return list(ROADS)
    unknown = [c for c in names if c not in ROADS]
    if unknown or not names:
        given = ", ".join(map(repr, unknown)) if unknown else "none"
        raise PayattnError(f"unknown converter {given}; valid converters: {', '.join(ROADS)}, all")
    return [c for c in ROADS if c in names]
