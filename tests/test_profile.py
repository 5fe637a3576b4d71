"""bench --profile: time per operator from ONNX Runtime's profiler and benchmark_model's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tiny_artifacts import copy_artifact_dirs

from payattn.bench import bench
from payattn.report import report
from payattn.runtime import validate_result
from payattn.runtime.profile import LITERT_NOTE, onnxruntime_profile, parse_benchmark_model
from payattn.runtime.settings import BenchSettings

# benchmark_model --enable_op_profiling=true, as TFLite 2.x prints it (columns tab-separated):
# one table for initialisation, then the regular runs' tables.
BENCHMARK_MODEL_PROFILE = """\
Profiling Info for Benchmark Initialization:
============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t ModifyGraphWithDelegate\t        1\t     4.210\t    98.000%\t    98.000%\t     0.000\t        1
\t         AllocateTensors\t        1\t     0.086\t     2.000%\t   100.000%\t     0.000\t        2

Timings (microseconds): count=1 curr=4296
Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t   TfLiteXNNPackDelegate\t        1\t     0.180\t    90.000%\t    90.000%\t     0.000\t        1
\t                  GATHER\t        1\t     0.012\t     6.000%\t    96.000%\t     0.000\t        1
\t                    CAST\t        2\t     0.008\t     4.000%\t   100.000%\t     0.000\t        2

Timings (microseconds): count=50 first=190 curr=200 min=180 max=260 avg=200 std=12
"""


def test_benchmark_model_profile_is_read_from_the_measured_runs() -> None:
    profile = parse_benchmark_model(BENCHMARK_MODEL_PROFILE, runs=50)
    assert profile["source"] == "benchmark_model" and profile["runs"] == 50
    assert [(o["op"], o["ms"], o["nodes"]) for o in profile["operators"]] == [
        ("TfLiteXNNPackDelegate", 0.18, 1), ("GATHER", 0.012, 1), ("CAST", 0.008, 2)]
    assert abs(sum(o["share"] for o in profile["operators"]) - 1) < 1e-3
    assert profile["attention_share"] is None  # TFLite node names do not say which layer
    empty = parse_benchmark_model("Timings (microseconds): count=50 avg=200\n", runs=50)
    assert empty["source"] is None and "no per-operator profile" in empty["note"]


def attention_model(path: Path) -> None:
    """x [1, 8, 16] -> two MatMuls named as attention nodes, then a 'head' MatMul of the same size."""
    rng = np.random.default_rng(0)
    weights = {name: numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), name)
               for name in ("w_q", "w_o", "w_head")}
    nodes = [helper.make_node("MatMul", ["x", "w_q"], ["q"], name="/blocks.0/attn/w_q/MatMul"),
             helper.make_node("MatMul", ["q", "w_o"], ["o"], name="/blocks.0/attn/w_o/MatMul"),
             helper.make_node("Relu", ["o"], ["r"], name="/blocks.0/mlp/Relu"),
             helper.make_node("MatMul", ["r", "w_head"], ["y"], name="/head/MatMul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16])],
                              list(weights.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnxruntime_profile_names_the_operators_and_the_attention_share(tmp_path: Path) -> None:
    attention_model(tmp_path / "model.onnx")
    feeds = {"x": np.ones((1, 8, 16), np.float32)}
    # ORT_DISABLE_ALL keeps the nodes as named (no fusion): two of three MatMuls are attention's.
    profile = onnxruntime_profile(tmp_path / "model.onnx", feeds, 1, "ORT_DISABLE_ALL", runs=50)
    ops = {o["op"]: o for o in profile["operators"]}
    assert set(ops) == {"MatMul", "Relu"} and ops["MatMul"]["nodes"] == 3 and ops["Relu"]["nodes"] == 1
    assert profile["operators"][0]["op"] == "MatMul" and profile["runs"] == 50
    assert 0.2 < profile["attention_share"] < 0.95
    assert not list(tmp_path.glob("ort*.json"))  # the profiler's file went with its temp dir


def test_bench_profile_records_and_reports_time_per_operator(tmp_path: Path) -> None:
    dirs = copy_artifact_dirs(tmp_path / "artifacts")
    results = tmp_path / "results.jsonl"
    settings = BenchSettings(runs=3, warmup_runs=1, min_seconds=0, warmup_seconds=0, profile=True)
    lines = bench([dirs["vision"]], settings=settings, results_path=results)
    by_runtime = {r["runtime"]["name"]: r for r in lines}
    ort = by_runtime["onnxruntime"]["profile"]
    assert ort["source"] == "onnxruntime" and {o["op"] for o in ort["operators"]} == {"Flatten", "Gemm"}  # MatMul + Add fused
    assert ort["attention_share"] == 0.0  # the tiny model has no attention layer
    assert by_runtime["litert"]["profile"] == {"source": None, "runs": 0, "operators": [],
                                               "attention_share": None, "note": LITERT_NOTE}
    for line in results.read_text().splitlines():
        validate_result(line)
    plain = bench([dirs["vision"]], settings=BenchSettings(runs=3, warmup_runs=1, min_seconds=0,
                                                           warmup_seconds=0))
    assert all("profile" not in r for r in plain)

    paths = report(results, tmp_path / "report")
    text = Path(paths.md).read_text()
    assert "time per operator" in text and "Gemm" in text and LITERT_NOTE in text
    assert json.loads(results.read_text().splitlines()[0])["profile"]["runs"] > 0
