"""Mechanism names, aliases and default heads: light enough for the CLI, the report and devices."""

from __future__ import annotations

from payattn.errors import PayattnError

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
