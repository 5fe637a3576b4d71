"""Time per operator of one artifact: ONNX Runtime's session profiler, benchmark_model's op profiling.

A profile is taken in a pass of its own after the timed runs: profiling records every node's
start and end, which would slow the runs being measured. Node times are medians over the
profiled runs, so one preempted run does not decide a small model's profile; the attention
share is the time of the nodes inside attention layers (ONNX node names hold '/attn/').
LiteRT's Python API exposes no per-operator timings, so a LiteRT profile says so instead.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from payattn.runtime.runners import ort_session_options, runtime_module

PROFILE_RUNS = 200
ATTENTION_MARK = "/attn/"
LITERT_NOTE = ("LiteRT's Python API exposes no per-operator timings; Android's benchmark_model "
               "(--enable_op_profiling) does")


def unavailable(note: str = LITERT_NOTE) -> dict[str, Any]:
    return {"source": None, "runs": 0, "operators": [], "attention_share": None, "note": note}


def onnxruntime_profile(path: Path, feeds: dict[str, np.ndarray], threads: int, graph_optimization: str,
                        runs: int = PROFILE_RUNS) -> dict[str, Any]:
    """Profile `runs` inferences of an ONNX file in a session of its own, set up as the timed
    one (ort_session_options: same threads and graph optimisation)."""
    ort = runtime_module("onnxruntime")
    options = ort_session_options(threads, graph_optimization)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="payattn-profile-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes: dict[tuple[str, str], list[float]] = {}
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            key = (event["name"], event.get("args", {}).get("op_name", "?"))
            nodes.setdefault(key, []).append(event["dur"] / 1e3)  # µs -> ms
    typical = {key: statistics.median(times) for key, times in nodes.items()}
    attention = sum(ms for (name, _), ms in typical.items() if ATTENTION_MARK in name)
    return summarise(_by_op(typical), "onnxruntime", runs, attention)


def _by_op(typical: dict[tuple[str, str], float]) -> dict[str, tuple[float, int]]:
    by_op: dict[str, tuple[float, int]] = {}
    for (_, op), ms in typical.items():
        total, count = by_op.get(op, (0.0, 0))
        by_op[op] = (total + ms, count + 1)
    return by_op


def summarise(by_op: dict[str, tuple[float, int]], source: str, runs: int,
              attention_ms: float | None) -> dict[str, Any]:
    """A profile record: operator types by time (ms per inference, share, node count)."""
    total = sum(ms for ms, _ in by_op.values()) or 1.0
    operators = [{"op": op, "ms": round(ms, 6), "share": round(ms / total, 4), "nodes": count}
                 for op, (ms, count) in sorted(by_op.items(), key=lambda kv: -kv[1][0])]
    share = None if attention_ms is None else round(attention_ms / total, 4)
    return {"source": source, "runs": runs, "operators": operators, "attention_share": share, "note": None}


_BY_TYPE = re.compile(r"=+ Summary by node type =+\s*\n(?P<body>.*?)(?:\n\s*\n|\nTimings|\Z)", re.S)


def parse_benchmark_model(text: str, runs: int) -> dict[str, Any]:
    """The 'Summary by node type' table of benchmark_model --enable_op_profiling=true (the last
    one printed: the measured runs, after the warm-up's). Its rows give [Node type] [count]
    [avg ms] ...; TFLite node names do not say which layer a node belongs to, so no attention
    share."""
    tables = list(_BY_TYPE.finditer(text))
    if not tables:
        return unavailable("benchmark_model printed no per-operator profile")
    by_op: dict[str, tuple[float, int]] = {}
    for line in tables[-1].group("body").splitlines():
        cells = line.split()
        if len(cells) >= 3 and not cells[0].startswith("["):
            try:
                by_op[cells[0]] = (float(cells[2]), int(cells[1]))
            except ValueError:
                continue
    if not by_op:
        return unavailable("benchmark_model printed an empty per-operator profile")
    return summarise(by_op, "benchmark_model", runs, None)
