"""Result lines: building them, checking them against payattn.result/1 (schemas/result.schema.json),
appending them.

A results file is JSON Lines that only ever grows: each line is written whole in one write,
then flushed and fsynced, and existing lines are never rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from payattn import __version__
from payattn.runtime.artifacts import Artifact
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import RESULT
from payattn.runtime.runners import Runner
from payattn.runtime.timing import summarize

RESULT_SCHEMA = RESULT.id
MANIFEST_FIELDS = ("mechanism", "task", "preset", "params", "attention_params", "flops")


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
    payattn.result/1 line as a writer must write it: every key present, no others, each valid."""
    if isinstance(line, str):
        try:
            line = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RuntimeJobError(f"result line is not JSON: {exc}") from None
    RESULT.check(line, strict=True)


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
