"""Result lines: building them, checking them against the payattn.result/1 schema, appending them.

A results file is JSON Lines that only ever grows: each line is written whole in one write,
then flushed and fsynced, and existing lines are never rewritten.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from payattn import __version__
from payattn.runtime.artifacts import PRECISIONS, Artifact
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.runners import FORMAT_RUNTIME, RUNTIMES, Runner
from payattn.runtime.timing import summarize

RESULT_SCHEMA = "payattn.result/1"
MANIFEST_FIELDS = ("mechanism", "task", "preset", "params", "attention_params", "flops")
RUNTIME_NAMES = (*RUNTIMES, "benchmark_model")
DEVICE_KINDS = ("local", "ssh", "adb")
_NUM = (int, float)
_NONE = type(None)
# benchmark_model (Android) prints no percentiles, so those may be null; the moments and the
# extremes every runtime reports stay required.
_LATENCY = {"mean": _NUM, "std": _NUM, "min": _NUM, "p10": (*_NUM, _NONE), "p50": (*_NUM, _NONE),
            "p90": (*_NUM, _NONE), "p99": (*_NUM, _NONE), "max": _NUM}
# Every key of a result line and the JSON types it may take; nested dicts are objects.
SCHEMA: dict[str, Any] = {
    "schema": str, "timestamp": str, "payattn_version": str, "git_commit": (str, _NONE),
    "artifact": {"path": str, "file": str, "sha256": str, "bytes": int, "format": str, "precision": str},
    "mechanism": str, "task": str, "preset": str, "params": int, "attention_params": int, "flops": int,
    "test_accuracy": (*_NUM, _NONE),
    "runtime": {"name": str, "version": str, "graph_optimization": (str, _NONE)},
    "device": {"name": str, "kind": str, "cpu": str, "cores": (int, _NONE), "os": str, "arch": str,
               "memory_bytes": (int, _NONE)},
    "threads": int, "warmup_runs": int, "runs": int, "init_ms": _NUM, "first_inference_ms": _NUM,
    "latency_ms": _LATENCY, "peak_memory_bytes": (int, _NONE), "harness_overhead_ms": (*_NUM, _NONE),
}
CHOICES = {"schema": (RESULT_SCHEMA,), "artifact.format": tuple(FORMAT_RUNTIME),
           "artifact.precision": PRECISIONS, "runtime.name": RUNTIME_NAMES, "device.kind": DEVICE_KINDS}


def artifact_fields(artifact: Artifact, git_commit: str | None) -> dict[str, Any]:
    """The head of every result line, whatever tool measured it: when, which code, which artifact."""
    return {
        "schema": RESULT_SCHEMA,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "payattn_version": __version__,
        "git_commit": git_commit,
        "artifact": {"path": str(artifact.path), "file": artifact.path.name, "sha256": artifact.sha256,
                     "bytes": artifact.bytes, "format": artifact.format, "precision": artifact.precision},
        **{key: artifact.manifest[key] for key in MANIFEST_FIELDS},
        "test_accuracy": artifact.entry.get("test_accuracy"),
    }


def build_result(artifact: Artifact, runner: Runner, *, device: dict[str, Any], git_commit: str | None,
                 warmup_runs: int, samples_ms: Sequence[float], first_inference_ms: float,
                 peak_memory_bytes: int | None, harness_overhead_ms: float | None) -> dict[str, Any]:
    """One measurement as a result line; validated, so a schema slip fails here, not in the report."""
    result = {
        **artifact_fields(artifact, git_commit),
        "runtime": {"name": runner.runtime, "version": runner.version,
                    "graph_optimization": runner.graph_optimization},
        "device": device,
        "threads": runner.threads,
        "warmup_runs": warmup_runs,
        "runs": len(samples_ms),
        "init_ms": round(runner.init_ms, 6),
        "first_inference_ms": round(first_inference_ms, 6),
        "latency_ms": summarize(samples_ms),
        "peak_memory_bytes": peak_memory_bytes,
        "harness_overhead_ms": harness_overhead_ms,
    }
    validate_result(result)
    return result


def validate_result(line: dict[str, Any] | str) -> None:
    """Raise RuntimeJobError naming the offending key unless `line` (a dict or its JSON text) is a
    payattn.result/1 line: every key present, no others, each of its type, finite numbers."""
    if isinstance(line, str):
        try:
            line = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RuntimeJobError(f"result line is not JSON: {exc}") from None
    _check_object(line, SCHEMA, "")


def _check_object(value: Any, spec: dict[str, Any], prefix: str) -> None:
    if not isinstance(value, dict):
        raise RuntimeJobError(f"result line: {prefix.rstrip('.') or 'the line'} must be a JSON object")
    missing = [key for key in spec if key not in value]
    if missing:
        raise RuntimeJobError(f"result line: key {prefix + missing[0]!r} is missing")
    unknown = [key for key in value if key not in spec]
    if unknown:
        raise RuntimeJobError(f"result line: key {prefix + unknown[0]!r} is not in schema {RESULT_SCHEMA}")
    for key, expected in spec.items():
        name, item = prefix + key, value[key]
        if isinstance(expected, dict):
            _check_object(item, expected, name + ".")
            continue
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if isinstance(item, bool) or not isinstance(item, allowed):
            kinds = "/".join("null" if t is _NONE else t.__name__ for t in allowed)
            raise RuntimeJobError(f"result line: key {name!r} must be {kinds}, got {item!r}")
        if isinstance(item, float) and not math.isfinite(item):
            raise RuntimeJobError(f"result line: key {name!r} must be finite, got {item!r}")
        if name in CHOICES and item not in CHOICES[name]:
            raise RuntimeJobError(f"result line: key {name!r} must be one of {', '.join(CHOICES[name])}, "
                                  f"got {item!r}")


def check_results_file(path: str | Path) -> Path:
    """Make sure lines can be appended to `path` (creating its directory), before measuring."""
    path = Path(path)
    if path.is_dir():
        raise RuntimeJobError(f"results file {path} is a directory; give a file path such as "
                              f"{path / 'results.jsonl'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as file:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                raise RuntimeJobError(f"results file {path} ends in an incomplete line (not written by "
                                      f"payattn); remove that line or use another results file")
    return path


def append_results(path: str | Path, results: Iterable[dict[str, Any]]) -> None:
    """Append each result as one JSON line: validated first, written whole in a single write on an
    O_APPEND descriptor, then fsynced, so a crash leaves complete lines only."""
    path = check_results_file(path)
    lines = []
    for result in results:
        validate_result(result)
        lines.append((json.dumps(result, allow_nan=False, separators=(",", ":")) + "\n").encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for data in lines:
            written = os.write(fd, data)
            if written != len(data):
                raise RuntimeJobError(f"results file {path}: short write ({written} of {len(data)} bytes); "
                                      f"the disk may be full; free space and remove the last line")
            os.fsync(fd)
    finally:
        os.close(fd)
