"""A benchmark job: load every selected artifact, then time them interleaved.

A job is the dict of `python -m payattn.runtime JOB.json` (see __main__). Every artifact is
loaded into every matching runtime and thread count, and run once, before anything is
measured: a bad artifact fails the job before any result exists. Each runtime is first primed
with one untimed load, so its one-time process set-up is not charged to the first artifact.
Each thread count is then one interleaved round, and its results are handed to `on_result` as
soon as it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from payattn.runtime.artifacts import Artifact, load_artifact
from payattn.runtime.env import device_info, git_commit
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import JOB
from payattn.runtime.noop import harness_ms
from payattn.runtime.profile import onnxruntime_profile, unavailable
from payattn.runtime.results import build_result
from payattn.runtime.runners import Runner, open_runner, usable_runtimes
from payattn.runtime.settings import BenchSettings
from payattn.runtime.timing import harness_overhead_ms, peak_rss_growth, run_interleaved, time_call

Log = Callable[[str], None]
OnResult = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Loaded:
    """An artifact opened in one runtime at one thread count, after its first inference."""

    artifact: Artifact
    runner: Runner
    first_inference_ms: float
    peak_memory_bytes: int | None


def run_job(job: dict[str, Any], on_result: OnResult | None = None,
            log: Log | None = None) -> list[dict[str, Any]]:
    """Run a job dict; return its result lines (each also passed to `on_result` when ready).

    Keys (schemas/job.schema.json): artifacts [{path, manifest}], runtimes, device {name, kind},
    the BenchSettings keys (threads, runs, warmup_runs, min_seconds, warmup_seconds; optional
    timeout_seconds, graph_optimization and profile) and git_commit (the host's, when the code was copied
    to a device without git).
    """
    log = log or (lambda message: None)
    settings = _check_job(job)
    bench: BenchSettings = settings["settings"]
    paths = dict.fromkeys((item["path"], item.get("manifest")) for item in job["artifacts"])
    artifacts = [load_artifact(path, manifest) for path, manifest in paths]
    runtimes = usable_runtimes(settings["runtimes"], [a.runtime for a in artifacts], log)
    pairs = [(a, runtime) for a in artifacts for runtime in runtimes if a.runtime == runtime]
    if not pairs:
        raise RuntimeJobError(f"none of the {len(artifacts)} artifact(s) runs on runtime(s) "
                              f"{settings['runtimes']} (.onnx needs onnxruntime, .tflite needs litert, .pte needs executorch); "
                              f"choose matching runtimes")
    level = settings["graph_optimization"]
    for runtime in dict.fromkeys(runtime for _, runtime in pairs):
        _prime(next(a for a, r in pairs if r == runtime), runtime, settings["threads"][0], level)
    context = {"overhead": harness_overhead_ms(), "git_commit": settings["git_commit"],
               "device": device_info(job["device"]["name"], job["device"]["kind"])}
    results = []
    for threads in settings["threads"]:
        results += _measure_round(pairs, threads, bench, level, context, on_result, log)
    return results


def _measure_round(pairs: list[tuple[Artifact, str]], threads: int, bench: BenchSettings, level: str,
                   context: dict[str, Any], on_result: OnResult | None, log: Log) -> list[dict[str, Any]]:
    """Load every pair at `threads`, measure them interleaved, and return their result lines.
    A round's runners are loaded just before it and gone after it: ExecuTorch's thread pool
    is one per process, so runners of two thread counts cannot be alive at once."""
    loaded = [_load(a, runtime, threads, level, log) for a, runtime in pairs]
    log(f"measuring {len(loaded)} configuration(s) interleaved, {threads} thread(s)")
    calls = [item.runner.run for item in loaded]
    warmups = run_interleaved(calls, bench.warmup_runs, bench.warmup_seconds)
    samples = run_interleaved(calls, bench.runs, bench.min_seconds)
    own_costs = _own_costs(loaded, threads, log)
    results = []
    for item, warm, measured in zip(loaded, warmups, samples):
        profile = _profile(item, level, log) if bench.profile else None
        result = build_result(item.artifact, item.runner, device=context["device"],
                              git_commit=context["git_commit"], warmup_runs=len(warm),
                              samples_ms=measured, first_inference_ms=item.first_inference_ms,
                              peak_memory_bytes=item.peak_memory_bytes,
                              harness_overhead_ms=context["overhead"],
                              harness_ms=own_costs[_noop_key(item)], profile=profile)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def _own_costs(loaded: list[Loaded], threads: int, log: Log) -> dict[tuple[str, str], dict[str, float] | None]:
    """The harness's per-call cost in each runtime, once per runtime and input spec (noop.py);
    None where no do-nothing model can be built: the measurement stands without it."""
    firsts = {_noop_key(item): item for item in loaded}
    costs = {}
    for key, item in firsts.items():
        try:
            costs[key] = harness_ms(item.runner.runtime, item.artifact.inputs, threads)
        except Exception as exc:  # a runtime's own model builder failing costs only this figure
            log(f"no harness cost for {item.runner.runtime}: {' '.join(str(exc).split())[:200]}")
            costs[key] = None
    return costs


def _noop_key(item: Loaded) -> tuple[str, str]:
    """What a do-nothing model's cost depends on: the runtime and the inputs it is fed."""
    return item.runner.runtime, repr(item.artifact.inputs)


def _profile(item: Loaded, graph_optimization: str, log: Log) -> dict[str, Any]:
    """Time per operator of one measured artifact, in a pass of its own (see profile.py)."""
    if item.runner.runtime != "onnxruntime":
        return unavailable()
    log(f"profiling {item.artifact.path}, {item.runner.threads} thread(s)")
    return onnxruntime_profile(item.artifact.path, item.runner.inputs, item.runner.threads, graph_optimization)


def _prime(artifact: Artifact, runtime: str, threads: int, graph_optimization: str) -> None:
    """Open and run one artifact untimed, then drop it: the runtime's one-time process set-up
    (library import, global environment, thread pools, delegate registration) is then charged
    to no artifact's init time or memory, where it would otherwise fall on whichever loads first."""
    _open_and_run_once(artifact, runtime, threads, graph_optimization)


def _load(artifact: Artifact, runtime: str, threads: int, graph_optimization: str, log: Log) -> Loaded:
    log(f"loading {artifact.path} in {runtime}, {threads} thread(s)")
    (runner, first_ms), peak = peak_rss_growth(
        lambda: _open_and_run_once(artifact, runtime, threads, graph_optimization))
    return Loaded(artifact, runner, first_ms, peak)


def _open_and_run_once(artifact: Artifact, runtime: str, threads: int,
                       graph_optimization: str) -> tuple[Runner, float]:
    runner = open_runner(runtime, artifact.path, artifact.inputs, threads, graph_optimization)
    try:
        first_ns = time_call(runner.run)
    except Exception as exc:
        raise RuntimeJobError(f"{artifact.path}: the first inference in {runtime} failed: {exc}; "
                              f"re-export the artifact") from None
    return runner, first_ns / 1e6


def _check_job(job: Any) -> dict[str, Any]:
    """Reject a job that is not a job.schema.json document, naming the key at fault; return the
    settings with defaults filled."""
    JOB.check(job, strict=True)
    settings = BenchSettings.from_job(job)
    return {"runtimes": list(dict.fromkeys(job["runtimes"])), "settings": settings,
            "threads": list(settings.threads), "graph_optimization": settings.graph_optimization,
            "git_commit": job["git_commit"] if "git_commit" in job else git_commit()}
