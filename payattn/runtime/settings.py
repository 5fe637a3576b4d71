"""Bench settings, declared once: how many runs, how long, how many threads, and their bounds.

Like TFLite's `BenchmarkModel::DefaultParams()`, each setting is stated here once with its
default, flag and help, its bounds taken from the job format (schemas/job.schema.json); the
CLI's `bench` and `demo` options, the job file a device gets and the check of a job read on
the device all derive from this. Every count and duration is bounded, so a typo such as
`--runs 99999999999999999999` is refused with the bound instead of running for hours.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import DEFAULT_GRAPH_OPTIMIZATION, JOB, ORT_LEVELS

# setting -> (command-line flag, help).
FLAGS: dict[str, tuple[str, str]] = {
    "threads": ("--threads", "Comma list of thread counts, e.g. 1,2"),
    "runs": ("--runs", "Measured runs per artifact, at least (and --min-seconds of them)"),
    "warmup_runs": ("--warmup", "Warm-up runs per artifact, at least (and --warmup-seconds of them)"),
    "min_seconds": ("--min-seconds", "Measured seconds per artifact, at least"),
    "warmup_seconds": ("--warmup-seconds", "Warm-up seconds per artifact, at least"),
    "timeout_seconds": ("--timeout", "Seconds a device may take for the whole job before it is stopped"),
}


def _bounds(name: str) -> tuple[int | float, int | float, bool]:
    """(lowest, highest, whole numbers only) of a setting, from the job schema. Thread counts
    above 256 only oversubscribe any CPU payattn targets; a million runs of the smallest model
    take minutes, not days."""
    spec = JOB.schema["properties"][name]
    spec = spec.get("items", spec)
    return spec["minimum"], spec["maximum"], spec["type"] == "integer"


BOUNDS = {name: (*_bounds(name), *FLAGS[name]) for name in FLAGS}


@dataclass(frozen=True)
class BenchSettings:
    """How a job measures. Defaults follow TFLite's benchmark_model: at least 50 runs and 1 s
    measured, after at least 1 warm-up run and 0.5 s of warm-up. Invalid values raise
    RuntimeJobError naming the flag and its bounds."""

    threads: tuple[int, ...] = (1,)
    runs: int = 50
    warmup_runs: int = 1
    min_seconds: float = 1.0
    warmup_seconds: float = 0.5
    timeout_seconds: float = 1800.0
    graph_optimization: str = DEFAULT_GRAPH_OPTIMIZATION
    profile: bool = False  # a per-operator profiling pass after the timed runs

    def __post_init__(self) -> None:
        threads = self.threads
        if not isinstance(threads, (list, tuple)) or not threads:
            raise RuntimeJobError("--threads needs at least one thread count, e.g. 1 or 1,2")
        object.__setattr__(self, "threads", tuple(dict.fromkeys(threads)))
        for thread_count in self.threads:
            check_bound("threads", thread_count)
        for name in ("runs", "warmup_runs", "min_seconds", "warmup_seconds", "timeout_seconds"):
            check_bound(name, getattr(self, name))
        if not isinstance(self.profile, bool):
            raise RuntimeJobError(f"profile must be true or false, got {self.profile!r}")
        if self.graph_optimization not in ORT_LEVELS:
            raise RuntimeJobError(f"unknown graph optimisation level {self.graph_optimization!r}; "
                                  f"valid levels: {', '.join(ORT_LEVELS)}")

    def to_job(self) -> dict[str, Any]:
        """The settings as job keys (JSON types)."""
        job = asdict(self)
        job["threads"] = list(self.threads)
        return job

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> BenchSettings:
        """The settings of a job dict; keys left out take their defaults, bad ones are refused."""
        known = {f.name for f in fields(cls)}
        given = {key: job[key] for key in known if key in job}
        if "threads" in given and (not isinstance(given["threads"], list) or not given["threads"]):
            raise RuntimeJobError("job key 'threads' must be a non-empty list of thread counts")
        for key, value in given.items():
            for item in value if key == "threads" else [value]:
                if key in BOUNDS:
                    check_bound(key, item, f"job key {key!r}")
        return cls(**given)


def check_bound(name: str, value: Any, label: str | None = None) -> None:
    """Refuse a value of setting `name` that is of the wrong type or outside its bounds; the
    error calls it `label` (default: its command-line flag)."""
    low, high, whole, flag, _ = BOUNDS[name]
    flag = label or flag
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or (
            isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        what = "a whole number" if whole else "a number of seconds"
        raise RuntimeJobError(f"{flag} must be {what} from {low:,} to {high:,}, got {value!r}")


def describe(name: str) -> str:
    """The help text of a setting, with its bounds: for the command line."""
    low, high, _, _, text = BOUNDS[name]
    return f"{text} ({low:,}–{high:,})."
