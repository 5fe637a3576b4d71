"""Reading results.jsonl: validation against payattn.result/1, the latest-line rule, CSV rows.

Every check names the file and line so that a broken line from one device is found at once;
the tables never see a line that has not passed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from payattn.errors import PayattnError
from payattn.mechanisms import ALIASES, MECHANISMS
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import DEVICE_KINDS, FORMATS, MEASURED_BY, PRECISIONS, RESULT, converter_of
from payattn.runtime.readers import parse_json, read_bytes

# The format is payattn.runtime's (schemas/result.schema.json); the report reads it tolerantly.
SCHEMA = RESULT.id
RUNTIMES = MEASURED_BY
__all__ = ["DEVICE_KINDS", "FORMATS", "PRECISIONS", "RUNTIMES", "Result", "as_results", "csv_row", "latest",
           "load_results"]


def _leaves(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of a result line, in the schema's order (nested objects flattened)."""
    keys = []
    for key, spec in schema["properties"].items():
        keys += _leaves(spec, f"{prefix}{key}.") if "properties" in spec else [prefix + key]
    return keys


# Keys added to the format after its first version, in the order they came: optional in lines
# (older lines lack them) and last in the CSV.
ADDED = ["device.emulated", "profile.source", "profile.runs", "profile.operators", "profile.attention_share",
         "profile.note", "artifact.converter", "artifact.parity.max_abs_diff",
         "artifact.parity.top1_agreement", "harness_ms.p50", "harness_ms.mean", "runtime.sha256", "accelerator",
         "delegation.status", "delegation.nodes_delegated", "delegation.nodes_total", "delegation.partitions",
         "delegation.unsupported", "delegation.evidence"]
FIELDS = [k for k in _leaves(RESULT.schema) if k not in ADDED] + ADDED
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
        """The value at a dotted key; None for a key older lines lack (see ADDED)."""
        value: Any = self.data
        for part in dotted.split("."):
            if dotted in ADDED and (value is None or part not in value):
                return None
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
    def accelerator(self) -> str:
        """cpu, or gpu (benchmark_model's GPU delegate); lines from before it existed are cpu."""
        return self.data.get("accelerator") or "cpu"

    @property
    def runtime(self) -> str:
        """The runtime, `benchmark_model gpu` for a GPU-delegate line: so every table keys, orders
        and heads the GPU as a runtime of its own, beside the CPU one it is compared with."""
        name = self.data["runtime"]["name"]
        return name if self.accelerator == "cpu" else f"{name} {self.accelerator}"

    @property
    def precision(self) -> str:
        return self.data["artifact"]["precision"]

    @property
    def file_format(self) -> str:
        """The artifact's file format (onnx, tflite, ...)."""
        return self.data["artifact"]["format"]

    @property
    def converter(self) -> str:
        """What made the artifact; lines from before the roads name none, and came from the
        one road there was for their format."""
        return converter_of(self.data["artifact"]) or "?"

    @property
    def road(self) -> str:
        """converter → runtime: the way the model took from PyTorch to the measured call."""
        return f"{self.converter} → {self.runtime}"

    @property
    def threads(self) -> int:
        return self.data["threads"]

    def latency(self, stat: str) -> float | None:
        """One latency statistic in ms, None where the measuring tool did not report it."""
        value = self.data["latency_ms"][stat]
        return None if value is None else float(value)

    @property
    def config(self) -> tuple[str, str, str, int, str]:
        """What a latency is measured on, apart from the mechanism: device, runtime, precision,
        threads, and the converter that made the file."""
        return self.device, self.runtime, self.precision, self.threads, self.converter


def _problem(record: Any) -> str | None:
    """What is wrong with one decoded line, or None if a reader can use it: a payattn.result/1
    line, keys unknown to this version ignored, mechanism names by canonical name or alias."""
    if isinstance(record, dict) and record.get("schema") != SCHEMA:
        return f"schema is {record.get('schema')!r}, expected {SCHEMA!r}"
    problem = RESULT.problem(record, strict=False)
    if problem:
        return problem
    if record["mechanism"] not in MECHANISMS and record["mechanism"] not in ALIASES:
        return f"mechanism is {record['mechanism']!r}, expected one of {', '.join(MECHANISMS)}"
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
        data = dict(record, mechanism=ALIASES.get(record["mechanism"], record["mechanism"]))
        results.append(Result(number, data, _parse_time(record["timestamp"])))
    if not results:
        raise PayattnError(f"{source} holds no result lines; run `payattn bench` to measure something first")
    return results


def load_results(path: Path) -> list[Result]:
    """Read and validate a results.jsonl file (blank lines are allowed and ignored)."""
    path = Path(path)
    if path.is_dir():
        raise PayattnError(f"results file {path} is a directory; pass the results.jsonl inside it, "
                           f"e.g. {path / 'results.jsonl'}")
    if not path.exists():
        raise PayattnError(f"results file {path} not found; run `payattn bench` to create it, "
                           "or pass the path it wrote")
    fix = "fix or delete that line (a truncated last line comes from an interrupted write)"
    try:
        data = read_bytes(path, "results file", "pass the results.jsonl `payattn bench` wrote")
        records = [(number, parse_json(raw, f"{path}:{number}", fix))
                   for number, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    except RuntimeJobError as exc:  # the report's own error type, for its callers
        raise PayattnError(str(exc)) from None
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

    A configuration is task × preset × mechanism × artifact format × converter × precision ×
    runtime × device × threads, so a re-measured or re-exported artifact replaces the older line.
    """
    chosen: dict[tuple[Any, ...], Result] = {}
    for r in results:
        key = (r.group, r.mechanism, r.file_format, r.config)
        if key not in chosen or (r.when, r.line) >= (chosen[key].when, chosen[key].line):
            chosen[key] = r
    return sorted(chosen.values(), key=lambda r: r.line)


def csv_row(result: Result, used: bool) -> list[Any]:
    """One flattened CSV row in CSV_COLUMNS order (None becomes an empty cell)."""
    values = [result.line, int(used)] + [result.get(k) for k in FIELDS if k != "schema"]
    return ["" if v is None else json.dumps(v) if isinstance(v, list) else v for v in values]
