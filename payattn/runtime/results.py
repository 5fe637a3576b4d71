"""Result lines: building them, checking them against payattn.result/1 (schemas/result.schema.json),
appending them.

A results file is JSON Lines that only ever grows: each line is written whole in one write,
then flushed and fsynced, and existing lines are never rewritten. Lines are appended only to a
regular file (never through a symbolic link) that holds payattn's result lines alone.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from payattn import __version__
from payattn.runtime.artifacts import Artifact
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import RESULT, converter_of
from payattn.runtime.runners import Runner
from payattn.runtime.timing import summarize

RESULT_SCHEMA = RESULT.id
# How every line payattn writes begins (json.dumps keeps the key order of build_result).
RESULT_PREFIX = ('{"schema":"' + RESULT_SCHEMA + '"').encode()
MANIFEST_FIELDS = ("mechanism", "task", "preset", "params", "attention_params", "flops")


def artifact_fields(artifact: Artifact, git_commit: str | None) -> dict[str, Any]:
    """The head of every result line, whatever tool measured it: when, which code, which artifact."""
    return {
        "schema": RESULT_SCHEMA,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "payattn_version": __version__,
        "git_commit": git_commit,
        "artifact": {"path": str(artifact.path), "file": artifact.path.name, "sha256": artifact.sha256,
                     "bytes": artifact.bytes, "format": artifact.format, "precision": artifact.precision,
                     "converter": converter_of(artifact.entry), **_parity(artifact.entry)},
        **{key: artifact.manifest[key] for key in MANIFEST_FIELDS},
        "test_accuracy": artifact.entry.get("test_accuracy"),
    }


def _parity(entry: dict[str, Any]) -> dict[str, Any]:
    """The export's parity figures of a manifest entry, as a result line carries them."""
    parity = entry.get("parity") or {}
    if "max_abs_diff" not in parity or "top1_agreement" not in parity:
        return {}
    return {"parity": {"max_abs_diff": float(parity["max_abs_diff"]),
                       "top1_agreement": float(parity["top1_agreement"])}}


def build_result(artifact: Artifact, runner: Runner, *, device: dict[str, Any], git_commit: str | None,
                 warmup_runs: int, samples_ms: Sequence[float], first_inference_ms: float,
                 peak_memory_bytes: int | None, harness_overhead_ms: float | None,
                 harness_ms: dict[str, float] | None = None,
                 profile: dict[str, Any] | None = None) -> dict[str, Any]:
    """One measurement as a result line; validated, so a schema slip fails here, not in the report."""
    result = {
        **artifact_fields(artifact, git_commit),
        "runtime": {"name": runner.runtime, "version": runner.version,
                    "graph_optimization": runner.graph_optimization},
        "device": device,
        "accelerator": "cpu",
        "threads": runner.threads,
        "warmup_runs": warmup_runs,
        "runs": len(samples_ms),
        "init_ms": round(runner.init_ms, 6),
        "first_inference_ms": round(first_inference_ms, 6),
        "latency_ms": summarize(samples_ms),
        "peak_memory_bytes": peak_memory_bytes,
        "harness_overhead_ms": harness_overhead_ms,
        "harness_ms": harness_ms,
    }
    if profile is not None:
        result["profile"] = profile
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


def check_results_file(path: str | Path, log: Callable[[str], None] | None = None, *,
                       repair: bool = True, scan: bool = True) -> Path:
    """Make sure lines can be appended to `path`, before anything is measured: its folder is
    created; it must be a regular file, not a symbolic link, and (`scan`) hold payattn's result
    lines only; with `repair`, an interrupted last line that payattn itself left (a killed or
    full-disk append) is cut off, saying so through `log`. A foreign incomplete line is an error."""
    path = Path(path)
    if path.is_symlink():
        raise RuntimeJobError(f"results file {path} is a symbolic link, which payattn does not "
                              f"follow; give the path of a results file of payattn's own")
    if path.is_dir():
        raise RuntimeJobError(f"results file {path} is a directory; give a file path such as "
                              f"{path / 'results.jsonl'}")
    if path.exists() and not path.is_file():
        raise RuntimeJobError(f"results file {path} is not a regular file; give the path of a "
                              f"results file such as results.jsonl")
    folder = next((p for p in (path.absolute().parent, *path.absolute().parents) if p.exists()), None)
    if folder is not None and not folder.is_dir():
        raise RuntimeJobError(f"results file {path}: {folder} is a file, not a folder; choose another --results")
    target, need = (path, os.W_OK) if path.exists() else (folder, os.W_OK | os.X_OK)
    if target is None or not os.access(target, need):
        raise RuntimeJobError(f"results file {path} is not writable (read-only file or folder); "
                              f"choose a writable --results")
    if scan and path.exists():
        _check_ours(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeJobError(f"cannot create the folder of results file {path} ({exc.strerror}); "
                              f"choose a writable --results") from None
    if repair and path.exists() and path.stat().st_size:
        _repair_tail(path, log or (lambda message: None))
    return path


def _check_ours(path: Path) -> None:
    """Refuse a results file holding a complete line that payattn did not write."""
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, 1):
            if line.endswith(b"\n") and line.strip() and not line.startswith(RESULT_PREFIX):
                raise RuntimeJobError(
                    f"results file {path} is not payattn's: line {number} is not a result line "
                    f"payattn wrote, and payattn appends only to its own results files; give "
                    f"another --results")


def _repair_tail(path: Path, log: Callable[[str], None]) -> None:
    """Cut off an incomplete last line that payattn wrote; refuse to touch anyone else's."""
    with open(path, "rb+") as file:
        size = file.seek(0, os.SEEK_END)
        start = max(0, size - (1 << 20))
        file.seek(start)
        tail = file.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n") + 1
        if start and not cut:
            cut = len(tail)  # a last line over 1 MiB is nobody's result line
        if not tail[cut:].startswith(RESULT_PREFIX):
            raise RuntimeJobError(f"results file {path} ends in an incomplete line that payattn did not "
                                  f"write; remove that line or use another results file")
        file.truncate(start + cut)
        os.fsync(file.fileno())
    log(f"{path}: removed an incomplete last line ({size - start - cut} bytes) left by an interrupted "
        f"bench; the complete lines before it are kept")


def append_results(path: str | Path, results: Iterable[dict[str, Any]]) -> None:
    """Append each result as one JSON line, all or nothing: validated first, written in a single
    write on an O_APPEND descriptor (one that follows no symbolic link, on a file whose first line
    is payattn's) and fsynced; a short or failed write (a full disk) is cut back to the previous
    length, so the file only ever holds complete lines."""
    path = check_results_file(path, scan=False)
    lines = []
    for result in results:
        validate_result(result)
        lines.append((json.dumps(result, allow_nan=False, separators=(",", ":")) + "\n").encode())
    fd = _open_append(path, lambda line: line.startswith(RESULT_PREFIX), "results file",
                      "give the path of a results file of payattn's own with --results")
    try:
        for data in lines:
            before = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"No space left on device: {written} of {len(data)} bytes written")
                os.fsync(fd)
            except OSError as exc:
                os.ftruncate(fd, before)
                raise RuntimeJobError(f"results file {path}: could not append a line ({exc.strerror}); "
                                      f"the file is as it was before it; free space on that disk or "
                                      f"choose another --results") from None
    finally:
        os.close(fd)


def _open_append(path: Path, belongs: Callable[[bytes], bool], what: str, fix: str) -> int:
    """A read-write O_APPEND descriptor on `path`, created if missing, that never follows a
    symbolic link and is refused unless `path` is a regular file that is empty or whose first
    line `belongs` recognises as what payattn appends there. The caller closes it."""
    path = Path(path)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RuntimeJobError(f"{what} {path} is a symbolic link, which payattn does not follow; "
                               f"{fix}") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise RuntimeJobError(f"{what} {path} is not a regular file; {fix}") from None
        raise RuntimeJobError(f"cannot open {what} {path} ({exc.strerror}); {fix}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RuntimeJobError(f"{what} {path} is not a regular file; {fix}")
        head = os.pread(fd, 4096, 0)
        if head and not belongs(head.split(b"\n", 1)[0]):
            raise RuntimeJobError(f"{what} {path} is not a file payattn wrote (its first line is not "
                               f"one of payattn's); {fix}")
    except BaseException:
        os.close(fd)
        raise
    return fd
