"""Parse the text output of TensorFlow Lite's `benchmark_model` tool.

benchmark_model prints (optionally behind an `INFO: ` prefix):
  * one statistics line per phase, `count=… first=… curr=… min=… max=… avg=… std=…`, newer
    builds adding `p5=… median=… p95=…`; the warm-up phase comes first and the measured
    phase is the one after the last "Running benchmark for at least N iterations" line;
    a one-run phase prints only `count=1 curr=…`;
  * `Inference timings in us: Init: …, First inference: …, Warmup (avg): …, Inference (avg): …`
    (older builds: `Average inference timings in us: Warmup: …, Init: …, no stats: …`);
  * memory as `Memory footprint delta from the start of the tool (MB): init=… overall=…`
    (current), `Peak memory footprint (MB): init=… overall=…` (older builds) and/or
    `Overall peak memory footprint (MB) via periodic monitoring: …`.
All times are microseconds. It never prints p10, p90 or p99, and p50 only where the build
prints `median=`: those stay None rather than being invented.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
STAT_LINE = re.compile(rf"\bcount=(\d+)((?:\s+[a-z0-9]+={NUMBER})*)")
STAT_FIELD = re.compile(rf"([a-z0-9]+)=({NUMBER})")
RUNNING = re.compile(r"Running benchmark for at least (\d+) iterations")
TIMINGS = re.compile(r"[Ii]nference timings in us:")
INIT = re.compile(rf"\bInit: ({NUMBER})")
FIRST = re.compile(rf"First inference: ({NUMBER})")
MEMORY_DELTA = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=({NUMBER}) overall=({NUMBER})"
)
MEMORY_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUMBER})")
VERSION = re.compile(r"Tensorflow Version\s*:\s*(\S+)")
MB = 1024 * 1024


@dataclass
class PhaseStats:
    """One `count=…` line, in microseconds."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None


@dataclass
class BenchmarkModelOutput:
    """What one benchmark_model run reported, times in milliseconds, memory in bytes."""

    warmup: PhaseStats | None
    inference: PhaseStats
    init_ms: float | None
    first_inference_ms: float | None
    peak_memory_bytes: int | None
    version: str | None

    def latency_ms(self) -> dict[str, float | None]:
        """The result schema's latency block; what benchmark_model does not print is None."""
        stats = self.inference

        def ms(value: float | None) -> float | None:
            return None if value is None else value / 1000.0

        mean = stats.avg if stats.avg is not None else stats.curr
        return {
            "mean": ms(mean),
            "std": ms(stats.std if stats.std is not None else (0.0 if stats.count == 1 else None)),
            "min": ms(stats.min if stats.min is not None else (stats.curr if stats.count == 1 else None)),
            "p10": None,
            "p50": ms(stats.median),
            "p90": None,
            "p99": None,
            "max": ms(stats.max if stats.max is not None else (stats.curr if stats.count == 1 else None)),
        }


class BenchmarkModelParseError(ValueError):
    """The text is not (complete) benchmark_model output."""


def parse_stat_line(line: str) -> PhaseStats | None:
    match = STAT_LINE.search(line)
    if not match:
        return None
    values = {key: float(value) for key, value in STAT_FIELD.findall(match.group(2))}
    known = {k: v for k, v in values.items() if k in PhaseStats.__dataclass_fields__ and k != "count"}
    return PhaseStats(count=int(match.group(1)), **known)


def parse_benchmark_model(text: str) -> BenchmarkModelOutput:
    """Parse a whole benchmark_model log; raise BenchmarkModelParseError if no measured phase."""
    phases: list[PhaseStats] = []
    measured: int | None = None  # index in phases of the measured phase
    expect_inference = False
    runs_seen = 0
    init = first = memory = peak = version = None
    for line in text.splitlines():
        if RUNNING.search(line):
            runs_seen += 1
            expect_inference = runs_seen >= 2
            continue
        stats = parse_stat_line(line)
        if stats is not None:
            phases.append(stats)
            if expect_inference:
                measured = len(phases) - 1
            continue
        if TIMINGS.search(line):
            init = INIT.search(line) or init
            first = FIRST.search(line) or first
        memory = MEMORY_DELTA.search(line) or memory
        peak = MEMORY_PEAK.search(line) or peak
        version = VERSION.search(line) or version
    if measured is None and len(phases) >= 2:
        measured = len(phases) - 1  # logs filtered down to the statistics lines
    if measured is None:
        raise BenchmarkModelParseError(
            "no measured statistics line (count=… avg=…) after 'Running benchmark for at least N iterations'"
        )
    inference = phases[measured]
    warmup = phases[measured - 1] if measured > 0 else None
    init_ms = float(init.group(1)) / 1000.0 if init else None
    first_us = float(first.group(1)) if first else None
    if first_us is None and warmup is not None:  # older builds: the warm-up's first run
        first_us = warmup.first if warmup.first is not None else warmup.curr
    first_ms = None if first_us is None else first_us / 1000.0
    peak_bytes = None
    if peak:
        peak_bytes = int(round(float(peak.group(1)) * MB))
    elif memory:
        peak_bytes = int(round(float(memory.group(2)) * MB))
    if peak_bytes is not None and peak_bytes <= 0:
        peak_bytes = None  # the tool prints 0 where it cannot measure memory
    return BenchmarkModelOutput(
        warmup=warmup,
        inference=inference,
        init_ms=init_ms,
        first_inference_ms=first_ms,
        peak_memory_bytes=peak_bytes,
        version=version.group(1) if version else None,
    )


# -- the GPU delegate: how much of the graph it took, from the tool's own lines ----------------
# `Replacing 58 out of 58 node(s) …` (current builds) or `Replacing 63 node(s) …` (older ones).
GPU_REPLACING = re.compile(r"Replacing (\d+) (?:out of (\d+) )?node\(s\) with delegate \((\w*Gpu\w*)\) node, "
                           r"yielding (\d+) partitions")
GPU_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations will run "
                       r"on the CPU")
GPU_UNSUPPORTED = "operations are not supported by GPU delegate:"
UNSUPPORTED_OP = re.compile(r"^(?:ERROR: )?([A-Z][A-Z0-9_]*(?: \S+)?):(.*)$")
# What the tool prints when the delegate was asked for and not applied.
GPU_NOT_APPLIED = ("Failed to apply GPU delegate", "GPU acceleration is unsupported",
                   "will not be executed by the delegate", "Restored original execution plan after delegate")


@dataclass
class GpuDelegation:
    """What benchmark_model said of the GPU delegate: `status` full, partial or none (not
    applied), node counts where it printed them, the operators it refused, and its own line."""

    status: str
    nodes_delegated: int | None
    nodes_total: int | None
    partitions: int | None
    unsupported: list[str]
    evidence: str

    def to_json(self) -> dict:
        return {"status": self.status, "nodes_delegated": self.nodes_delegated,
                "nodes_total": self.nodes_total, "partitions": self.partitions,
                "unsupported": self.unsupported, "evidence": self.evidence}


def parse_gpu_delegation(text: str) -> GpuDelegation:
    """Read a `--use_gpu=true` run's log: was the GPU delegate applied, and to how much?"""
    lines = [line.strip() for line in text.splitlines()]
    unsupported: list[str] = []
    replacing = split = failed = None
    in_list = False
    for line in lines:
        if GPU_UNSUPPORTED in line:
            in_list = True
            continue
        op = UNSUPPORTED_OP.match(line)
        if in_list and op:
            unsupported.append(f"{op.group(1)}: {op.group(2).strip()}".rstrip(": "))
            continue
        in_list = False
        replacing = GPU_REPLACING.search(line) or replacing
        split = GPU_SPLIT.search(line) or split
        if failed is None and any(marker in line for marker in GPU_NOT_APPLIED):
            failed = line
    if failed is not None or replacing is None:
        evidence = failed or ("no 'Replacing … with delegate (TfLiteGpuDelegateV2)' line: the GPU "
                              "delegate took nothing")
        return GpuDelegation("none", None, None, None, unsupported, evidence)
    delegated = int(replacing.group(1))
    total = int(replacing.group(2)) if replacing.group(2) else None
    if total is None:
        total = delegated + int(split.group(2)) if split else delegated
    partitions = int(replacing.group(4))
    status = "full" if delegated == total and partitions == 1 and not unsupported else "partial"
    evidence = replacing.group(0) + (f"; {split.group(0)}" if split and status == "partial" else "")
    return GpuDelegation(status, delegated, total, partitions, unsupported, evidence)
