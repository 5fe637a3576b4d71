"""Benchmark artifact dirs and append the results to a results file.

The host-side counterpart of `python -m payattn.runtime JOB.json`: it reads each dir's
manifest.json, selects artifacts by runtime and precision, and builds the job a device gets;
`bench` runs it in this process, `payattn.devices.run_on_devices` on named devices. Everything is loaded and checked before the first
measurement, so a missing, corrupt or mismatched artifact fails before a line is appended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from payattn.locks import results_lock
from payattn.runtime.artifacts import load_manifest
from payattn.runtime.formats import PRECISIONS
from payattn.runtime.env import git_commit
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.job import run_job
from payattn.runtime.results import append_results, check_results_file
from payattn.runtime.runners import FORMAT_RUNTIME, RUNTIMES, check_runtime
from payattn.runtime.settings import BenchSettings


def build_job(artifact_dirs: Iterable[str | Path], runtimes: Iterable[str] = RUNTIMES,
              precisions: Iterable[str] = ("fp32",), settings: BenchSettings = BenchSettings(),
              device_name: str = "local") -> dict[str, Any]:
    """The harness job (see `python -m payattn.runtime`) for the selected artifacts of
    `artifact_dirs`, measured as `settings` say: the same job runs here, over SSH or,
    translated, over ADB. Raises RuntimeJobError on bad input."""
    runtimes, precisions = list(runtimes), list(precisions)
    for runtime in runtimes:
        check_runtime(runtime)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise RuntimeJobError(f"unknown precision(s) {unknown}; valid precisions: {', '.join(PRECISIONS)}")
    artifacts = [item for path in artifact_dirs for item in select_artifacts(path, runtimes, precisions)]
    if not artifacts:
        raise RuntimeJobError("no artifact dir given; pass at least one dir written by `payattn export`")
    return {"artifacts": artifacts, "runtimes": runtimes, **settings.to_job(),
            "device": {"name": device_name, "kind": "local"}, "git_commit": git_commit()}


def bench(artifact_dirs: Iterable[str | Path], *, results_path: str | Path | None = None,
          on_result: Callable[[dict[str, Any]], None] | None = None,
          log: Callable[[str], None] | None = None, wait: bool = False,
          **job_options: Any) -> list[dict[str, Any]]:
    """Measure every selected artifact of `artifact_dirs` in this process, interleaved, in every
    runtime and thread count; return the result lines. `job_options` are those of `build_job`.
    Each line is appended to `results_path` (when given) and then passed to `on_result` as soon
    as its thread-count round ends; `log` receives stage messages. The results file is locked
    for the run (`wait`: wait for another writer instead of failing).
    """
    job = build_job(artifact_dirs, **job_options)
    if results_path is None:
        return run_job(job, on_result=on_result, log=log)
    check_results_file(results_path, repair=False)
    with results_lock(Path(results_path), wait=wait, log=log):
        results_file = check_results_file(results_path, log)
        return run_job(job, on_result=lambda result: _keep(results_file, result, on_result), log=log)


def _keep(results_file: Path, result: dict[str, Any],
          on_result: Callable[[dict[str, Any]], None] | None) -> None:
    """Append one line, then show it."""
    append_results(results_file, [result])
    if on_result:
        on_result(result)


def select_artifacts(artifact_dir: str | Path, runtimes: list[str],
                     precisions: list[str]) -> list[dict[str, str]]:
    """The job entries ({"path", "manifest"}) of one artifact dir that match the runtimes and
    precisions; none matching is an error listing what the dir has."""
    directory = Path(artifact_dir).resolve()
    manifest_path = directory / "manifest.json"
    manifest = load_manifest(manifest_path)
    chosen = [{"path": str(directory / entry["file"]), "manifest": str(manifest_path)}
              for entry in manifest["artifacts"]
              if FORMAT_RUNTIME.get(entry["format"]) in runtimes and entry["precision"] in precisions
              and entry.get("variant", "as-trained") == "as-trained"]  # app forms add only input glue
    if not chosen:
        available = sorted({f"{FORMAT_RUNTIME.get(e['format'], e['format'])}/{e['precision']}"
                            for e in manifest["artifacts"]})
        raise RuntimeJobError(f"{directory} has no artifact for runtime(s) {', '.join(runtimes)} at "
                              f"precision(s) {', '.join(precisions)}; "
                              f"it has {', '.join(available) or 'none'}")
    return chosen
