"""The device registry's file format: any document tomllib reads, written back as TOML text,
atomically (a temp file in the same folder, then os.replace), so an interrupted write never
leaves half a registry and an entry payattn does not understand is kept as it was."""

from __future__ import annotations

import datetime
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from payattn.errors import PayattnError

def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    return key if BARE_KEY.match(key) else toml_string(key)


def toml_value(value: Any) -> str:
    """Any value tomllib reads, as TOML text (tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise PayattnError(f"cannot write {type(value).__name__} values to the device registry")


def render_document(document: dict[str, Any]) -> str:
    """A registry document as TOML: its other keys first, then one [devices.NAME] table per
    entry in name order (a non-table entry as a plain key, as it was read)."""
    lines = ["# payattn devices: edit with `payattn devices add/remove` (local is built in)."]
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in document.items() if k != "devices"]
    tables = document.get("devices", {})
    if any(not isinstance(entry, dict) for entry in tables.values()):
        lines += ["", "[devices]"]
        lines += [f"{toml_key(n)} = {toml_value(e)}" for n, e in tables.items() if not isinstance(e, dict)]
    for name in sorted(n for n, e in tables.items() if isinstance(e, dict)):
        lines += ["", f"[devices.{toml_key(name)}]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in tables[name].items()]
    return "\n".join(lines) + "\n"


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically: a temp file in the same folder, then os.replace."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".devices-", suffix=".toml", dir=path.parent)
    except OSError as exc:
        raise PayattnError(f"cannot write the device registry {path} ({exc.strerror}); "
                           f"pass a writable --devices-file") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
