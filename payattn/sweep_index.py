"""The sweep index, OUT/sweep.json: the one file both `payattn.sweep` (which writes it) and the
report (which reads it to find a sweep's run dirs) know, so it sits below both.

    read_index(out) -> dict   # {"schema", "payattn_version", "spec", "points": [...]}

The index is read as untrusted: every key either reader uses is checked for its type, and a
point's run dir must lie inside the sweep folder, before anything follows it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from payattn.errors import PayattnError
from payattn.runtime.readers import read_json

SCHEMA = "payattn.sweep/1"
INDEX = "sweep.json"
STATUSES = ("pending", "done", "failed")
# key -> (allowed types, description); bool is excluded from int by _fits
SPEC_KEYS = {"task": ((str,), "a task name"), "mechanisms": ((list,), "a list of mechanism names"),
             "seeds": ((list,), "a list of seeds"), "presets": ((list,), "a list of presets"),
             "options": ((dict,), "an object of option values"), "epochs": ((int,), "an integer"),
             "data_dir": ((str, type(None)), "a path or null")}
POINT_KEYS = {"id": ((str,), "a string"), "variant": ((str,), "a string"), "run_dir": ((str,), "a path"),
              "mechanism": ((str,), "a mechanism name"), "seed": ((int,), "an integer"),
              "setting": ((dict,), "an object"), "status": ((str,), "one of " + ", ".join(STATUSES))}


def fix_for(path: Path) -> str:
    return (f"delete or move {path} aside and run the same `payattn sweep` again: it indexes the "
            "finished run dirs anew without retraining them")


def read_index(out: Path) -> dict[str, Any]:
    """The checked sweep index of `out` (a sweep folder or its sweep.json)."""
    path = Path(out)
    path = path if path.name == INDEX and not path.is_dir() else path / INDEX
    if not path.exists():
        raise PayattnError(f"cannot read the sweep index {path}: it does not exist; pass the folder "
                           "`payattn sweep --out` wrote, or run `payattn sweep` to create it")
    document = read_json(path, "sweep index", fix_for(path))
    if document.get("schema") != SCHEMA:
        raise PayattnError(f"{path} is not a {SCHEMA} sweep index (its schema is "
                           f"{document.get('schema')!r}); pass the folder `payattn sweep --out` wrote")
    problem = index_problem(document)
    if problem:
        raise PayattnError(f"sweep index {path}: {problem}; {fix_for(path)}")
    return document


def index_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with an index document, naming the key; None if the readers can use it."""
    spec, points = document.get("spec"), document.get("points")
    if not isinstance(spec, dict):
        return "'spec' must be an object"
    if not isinstance(points, list):
        return f"'points' must be a list, got {type(points).__name__}"
    problem = _keys(spec, SPEC_KEYS, "spec")
    lists = {"mechanisms": str, "seeds": int, "presets": str}
    for key, kind in lists.items():
        if problem is None and not all(_fits(v, (kind,)) for v in spec[key]):
            problem = f"'spec.{key}' must hold only {kind.__name__} values"
    for number, point in enumerate(points):
        if problem is not None:
            break
        where = f"points[{number}]"
        problem = _keys(point, POINT_KEYS, where) if isinstance(point, dict) else f"{where} must be an object"
        if problem is None and point["status"] not in STATUSES:
            problem = f"'{where}.status' must be one of {', '.join(STATUSES)}, got {point['status']!r}"
        if problem is None and not inside(point["run_dir"]):
            problem = f"'{where}.run_dir' {point['run_dir']!r} is not a folder inside the sweep"
        if problem is None and (PurePosixPath(point["variant"]).name != point["variant"]
                                or not inside(point["variant"])):
            problem = f"'{where}.variant' {point['variant']!r} is not a plain folder name"
    return problem


def inside(run_dir: str) -> bool:
    """Whether a relative path stays inside the folder it is relative to."""
    parts = PurePosixPath(run_dir).parts
    return bool(parts) and not PurePosixPath(run_dir).is_absolute() and ".." not in parts \
        and "\\" not in run_dir and "\0" not in run_dir


def _keys(value: dict[str, Any], keys: dict[str, tuple[tuple[type, ...], str]], where: str) -> str | None:
    for key, (kinds, description) in keys.items():
        if key not in value:
            return f"'{where}.{key}' is missing"
        if not _fits(value[key], kinds):
            return f"'{where}.{key}' must be {description}, got {type(value[key]).__name__}"
    return None


def _fits(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
