"""Reading results.jsonl: validation against payattn.result/1, the latest-line rule, CSV rows.

Every check names the file and line so that a broken line from one device is found at once;
the tables never see a line that has not passed here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from payattn.errors import PayattnError
from payattn.mechanisms import MECHANISMS
from payattn.runtime.artifacts import PRECISIONS
from payattn.runtime.results import DEVICE_KINDS, RESULT_SCHEMA, RUNTIME_NAMES
from payattn.runtime.runners import FORMAT_RUNTIME

# The vocabulary of a result line is the writer's (payattn.runtime); only its checks differ here.
SCHEMA = RESULT_SCHEMA
FORMATS = tuple(FORMAT_RUNTIME)
RUNTIMES = RUNTIME_NAMES
PERCENTILES = ("mean", "std", "min", "p10", "p50", "p90", "p99", "max")
# TFLite's benchmark_model (Android) prints only avg/std/min/max, sometimes a median: its lines
# carry null for the percentiles it did not print.
OPTIONAL_PERCENTILES = ("p10", "p50", "p90", "p99")

_NUM, _INT, _STR, _NULL = "number", "integer", "string", "null"
# Dotted key -> accepted JSON types; every key of the contract is required, extra keys are kept.
FIELDS: dict[str, tuple[str, ...]] = {
    "schema": (_STR,), "timestamp": (_STR,), "payattn_version": (_STR,), "git_commit": (_STR, _NULL),
    "artifact.path": (_STR,), "artifact.file": (_STR,), "artifact.sha256": (_STR,),
    "artifact.bytes": (_INT,), "artifact.format": (_STR,), "artifact.precision": (_STR,),
    "mechanism": (_STR,), "task": (_STR,), "preset": (_STR,), "params": (_INT,),
    "attention_params": (_INT,), "flops": (_INT,), "test_accuracy": (_NUM, _NULL),
    "runtime.name": (_STR,), "runtime.version": (_STR,), "runtime.graph_optimization": (_STR, _NULL),
    "device.name": (_STR,), "device.kind": (_STR,), "device.cpu": (_STR, _NULL),
    "device.cores": (_INT, _NULL), "device.os": (_STR, _NULL), "device.arch": (_STR, _NULL),
    "device.memory_bytes": (_INT, _NULL),
    "threads": (_INT,), "warmup_runs": (_INT,), "runs": (_INT,),
    "init_ms": (_NUM,), "first_inference_ms": (_NUM,),
    **{f"latency_ms.{p}": (_NUM, _NULL) if p in OPTIONAL_PERCENTILES else (_NUM,) for p in PERCENTILES},
    "peak_memory_bytes": (_INT, _NULL), "harness_overhead_ms": (_NUM, _NULL),
}
_CHOICES = {"artifact.format": FORMATS, "artifact.precision": PRECISIONS, "device.kind": DEVICE_KINDS}
# The long-form CSV: the contract's keys flattened, plus where the line came from and whether
# the tables use it. The order is part of the output format; append, never reorder.
CSV_COLUMNS = ["line", "used_in_tables"] + [k.replace(".", "_") for k in FIELDS if k != "schema"]


@dataclass(frozen=True)
class Result:
    """One validated result line; `line` is its 1-based number in the results file."""

    line: int
    data: Mapping[str, Any]
    when: datetime

    def get(self, dotted: str) -> Any:
        value: Any = self.data
        for part in dotted.split("."):
            value = value[part]
        return value

    @property
    def group(self) -> tuple[str, str]:
        return self.data["task"], self.data["preset"]

    @property
    def mechanism(self) -> str:
        return self.data["mechanism"]

    @property
    def device(self) -> str:
        return self.data["device"]["name"]

    @property
    def runtime(self) -> str:
        return self.data["runtime"]["name"]

    @property
    def precision(self) -> str:
        return self.data["artifact"]["precision"]

    @property
    def fmt(self) -> str:
        return self.data["artifact"]["format"]

    @property
    def threads(self) -> int:
        return self.data["threads"]

    def latency(self, stat: str) -> float | None:
        """One latency statistic in ms, None where the measuring tool did not report it."""
        value = self.data["latency_ms"][stat]
        return None if value is None else float(value)

    @property
    def config(self) -> tuple[str, str, str, int]:
        """What a latency is measured on, apart from the mechanism: device, runtime, precision, threads."""
        return self.device, self.runtime, self.precision, self.threads


def _json_type(value: Any) -> str:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _NUM
    if isinstance(value, str):
        return _STR
    return type(value).__name__


def _problem(record: Any) -> str | None:
    """What is wrong with one decoded line, or None if it follows payattn.result/1."""
    if not isinstance(record, dict):
        return f"a JSON {_json_type(record)} instead of an object"
    if record.get("schema") != SCHEMA:
        return f"schema is {record.get('schema')!r}, expected {SCHEMA!r}"
    for key, accepted in FIELDS.items():
        value: Any = record
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return f"missing key {key!r}"
            value = value[part]
        kind = _json_type(value)
        if kind not in accepted and not (kind == _INT and _NUM in accepted):
            return f"{key} is {kind} {value!r}, expected {' or '.join(accepted)}"
        if kind in (_INT, _NUM) and not (math.isfinite(value) and value >= 0):
            return f"{key} is {value!r}, expected a finite non-negative number"
        if key in _CHOICES and value not in _CHOICES[key]:
            return f"{key} is {value!r}, expected one of {', '.join(_CHOICES[key])}"
    if record["mechanism"] not in MECHANISMS and record["mechanism"] != "optimized":
        return f"mechanism is {record['mechanism']!r}, expected one of {', '.join(MECHANISMS)}"
    if record["threads"] < 1 or record["runs"] < 1:
        return "threads and runs must be at least 1"
    try:
        datetime.fromisoformat(record["timestamp"])
    except ValueError:
        return f"timestamp {record['timestamp']!r} is not an ISO 8601 date-time"
    return None


def _parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def validate(records: Iterable[tuple[int, Any]], source: str) -> list[Result]:
    """Turn (line number, decoded JSON) pairs into Results, or fail on the first bad one."""
    results = []
    for number, record in records:
        problem = _problem(record)
        if problem:
            raise PayattnError(f"{source}:{number}: {problem}; each line must be one {SCHEMA} "
                               "object as `payattn bench` writes it — fix or delete that line")
        data = dict(record, mechanism="optimised" if record["mechanism"] == "optimized" else record["mechanism"])
        results.append(Result(number, data, _parse_time(record["timestamp"])))
    if not results:
        raise PayattnError(f"{source} holds no result lines; run `payattn bench` to measure something first")
    return results


def load_results(path: Path) -> list[Result]:
    """Read and validate a results.jsonl file (blank lines are allowed and ignored)."""
    path = Path(path)
    if not path.is_file():
        raise PayattnError(f"results file {path} not found; run `payattn bench` to create it, "
                           "or pass the path it wrote")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PayattnError(f"cannot read results file {path}: {exc}") from None
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append((number, json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise PayattnError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno}); "
                               "fix or delete that line (a truncated last line comes from an "
                               "interrupted write)") from None
    return validate(records, str(path))


def as_results(results: Path | str | Iterable[Mapping[str, Any] | Result]) -> list[Result]:
    """Accept a results file, already loaded Results, or raw result dicts (as a bench returns them)."""
    if isinstance(results, (str, Path)):
        return load_results(Path(results))
    items = list(results)
    if items and all(isinstance(r, Result) for r in items):
        return items  # type: ignore[return-value]
    return validate(enumerate(items, start=1), "results")


def latest(results: list[Result]) -> list[Result]:
    """Keep the latest line (by timestamp, then by position) per measured configuration.

    A configuration is task × preset × mechanism × artifact format × precision × runtime ×
    device × threads, so a re-measured or re-exported artifact replaces the older line.
    """
    chosen: dict[tuple[Any, ...], Result] = {}
    for r in results:
        key = (r.group, r.mechanism, r.fmt, r.config)
        if key not in chosen or (r.when, r.line) >= (chosen[key].when, chosen[key].line):
            chosen[key] = r
    return sorted(chosen.values(), key=lambda r: r.line)


def csv_row(result: Result, used: bool) -> list[Any]:
    """One flattened CSV row in CSV_COLUMNS order (None becomes an empty cell)."""
    values = [result.line, int(used)] + [result.get(k) for k in FIELDS if k != "schema"]
    return ["" if v is None else v for v in values]
