"""The sweep index, OUT/sweep.json: the one file both `payattn.sweep` (which writes it) and the
report (which reads it to find a sweep's run dirs) know, so it sits below both.

    read_index(out) -> dict   # {"schema", "payattn_version", "spec", "points": [...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from payattn.errors import PayattnError

SCHEMA = "payattn.sweep/1"
INDEX = "sweep.json"


def read_index(out: Path) -> dict[str, Any]:
    """The sweep index of `out` (a sweep folder or its sweep.json)."""
    path = Path(out)
    path = path / INDEX if path.is_dir() else path
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PayattnError(f"cannot read the sweep index {path} ({exc}); run `payattn sweep` to create it") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise PayattnError(f"{path} is not a {SCHEMA} sweep index; pass the folder `payattn sweep --out` wrote")
    return document
