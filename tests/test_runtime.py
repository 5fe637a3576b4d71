"""payattn.runtime: statistics, the interleaved harness, runners on real tiny models, result lines,
and the device-side job run with torch and TensorFlow unimportable."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny_artifacts import copy_artifact_dirs

from payattn.runtime import (
    RuntimeJobError,
    append_results,
    make_inputs,
    open_runner,
    run_job,
    summarize,
    validate_result,
)
from payattn.runtime.artifacts import load_artifact
from payattn.runtime.env import cpu_from_cpuinfo, device_info, git_commit
from payattn.runtime.timing import harness_overhead_ms, peak_rss_growth, run_interleaved

ROOT = Path(__file__).resolve().parents[1]
TOKENS = [{"name": "tokens", "shape": [1, 8], "dtype": "int32", "layout": "tokens", "low": 0, "high": 20}]


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return copy_artifact_dirs(tmp_path)


def job_for(dirs: dict[str, Path], **overrides) -> dict:
    job = {"artifacts": [{"path": str(d / f), "manifest": str(d / "manifest.json")}
                         for d in dirs.values() for f in ("model.onnx", "model_fp32.tflite")],
           "runtimes": ["onnxruntime", "litert"], "threads": [1], "warmup_runs": 1, "warmup_seconds": 0,
           "runs": 3, "min_seconds": 0, "device": {"name": "test", "kind": "local"}}
    return {**job, **overrides}


@pytest.fixture(scope="module")
def result_line(tmp_path_factory: pytest.TempPathFactory) -> dict:
    dirs = copy_artifact_dirs(tmp_path_factory.mktemp("line"))
    return run_job(job_for({"vision": dirs["vision"]}, runtimes=["onnxruntime"]))[0]


# ---- statistics -------------------------------------------------------------------------------

def test_summarize_one_to_ten():
    stats = summarize([7, 3, 10, 1, 5, 2, 9, 4, 8, 6])  # order must not matter
    # Linear interpolation at rank p/100*(n-1): p10 -> 1 + 0.9, p90 -> 9 + 0.1, p99 -> 9 + 0.91.
    expected = {"mean": 5.5, "std": math.sqrt(8.25), "min": 1, "p10": 1.9, "p50": 5.5, "p90": 9.1,
                "p99": 9.91, "max": 10}
    assert stats == pytest.approx(expected, abs=1e-6)


def test_summarize_population_std_and_even_median():
    stats = summarize([2, 4, 4, 4, 5, 5, 7, 9])  # mean 5, squared deviations sum to 32, 32/8 = 4
    assert stats["mean"] == 5 and stats["std"] == 2
    # ranks 0.7, 3.5, 6.3, 6.93 over the sorted samples 2 4 4 4 5 5 7 9
    assert [stats[k] for k in ("p10", "p50", "p90", "p99")] == pytest.approx([3.4, 4.5, 7.6, 8.86])


def test_summarize_single_and_empty():
    assert summarize([3.25]) == {k: (0.0 if k == "std" else 3.25) for k in summarize([3.25])}
    with pytest.raises(ValueError, match="no latency samples"):
        summarize([])


# ---- harness ----------------------------------------------------------------------------------

def test_run_interleaved_takes_turns_in_blocks():
    order: list[str] = []
    samples = run_interleaved([lambda: order.append("a"), lambda: order.append("b")], runs=25, min_seconds=0,
                              block=10)
    assert [len(s) for s in samples] == [25, 25]
    assert order == ["a"] * 10 + ["b"] * 10 + ["a"] * 10 + ["b"] * 10 + ["a"] * 5 + ["b"] * 5


def test_run_interleaved_runs_until_count_and_time_are_both_met():
    calls = []
    samples = run_interleaved([lambda: (calls.append(1), time.sleep(0.002))], runs=2, min_seconds=0.1,
                              block=1)
    # time, not the 2 runs, decided (robust to a loaded machine, where a 2 ms sleep can take 20 ms)
    assert sum(samples[0]) >= 100 and len(samples[0]) == len(calls) > 2
    samples = run_interleaved([lambda: time.sleep(0.002)], runs=7, min_seconds=0.001, block=4)
    assert len(samples[0]) == 7  # count decided, and it stopped at 7, not at the end of a block
    assert run_interleaved([lambda: calls.append(1)], runs=0, min_seconds=0) == [[]]


def test_run_interleaved_stops_counting_time_at_the_sample_cap():
    # A fast call under a long minimum time would otherwise keep every sample in memory.
    started = time.perf_counter()
    samples = run_interleaved([lambda: None, lambda: None], runs=3, min_seconds=3600, block=10,
                              max_samples=50)
    assert [len(s) for s in samples] == [50, 50]
    assert time.perf_counter() - started < 60


def test_harness_overhead_is_small_and_positive():
    assert 0 < harness_overhead_ms() < 0.05


def test_peak_rss_growth_sees_a_freed_allocation():
    def allocate_and_free() -> str:
        block = np.ones(8 * 1024 * 1024)  # 64 MiB, written so it is resident
        del block
        return "done"

    result, growth = peak_rss_growth(allocate_and_free)
    assert result == "done"
    assert sys.platform.startswith("linux"), "the peak-memory figure is only measured on Linux"
    assert growth >= 60 * 1024 * 1024


# ---- inputs and runners -----------------------------------------------------------------------

def test_make_inputs_is_seeded_and_follows_the_spec():
    specs = [{"name": "x", "shape": [2, 3, 4], "dtype": "float32"}, TOKENS[0]]
    first, again = make_inputs(specs), make_inputs(specs)
    assert first["x"].dtype == np.float32 and first["x"].shape == (2, 3, 4)
    assert first["tokens"].dtype == np.int32 and first["tokens"].min() >= 0 and first["tokens"].max() < 20
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["x"], make_inputs(specs, seed=1)["x"])
    wide = make_inputs([{"name": "x", "shape": [100_000], "dtype": "float32"}])["x"]
    assert abs(wide.mean()) < 0.02 and abs(wide.std() - 1) < 0.02


@pytest.mark.parametrize("kind", ["vision", "text"])
@pytest.mark.parametrize("file,runtime", [("model.onnx", "onnxruntime"), ("model_fp32.tflite", "litert")])
def test_runner_runs_a_real_model(dirs, kind, file, runtime):
    artifact = load_artifact(dirs[kind] / file)
    runner = open_runner(runtime, artifact.path, artifact.inputs, threads=2)
    runner.run()
    assert (runner.runtime, runner.threads) == (runtime, 2) and runner.init_ms > 0
    assert runner.graph_optimization == ("ORT_ENABLE_ALL" if runtime == "onnxruntime" else None)
    assert runner.version.split(".")[0].isdigit()


def test_litert_inputs_match_by_tensor_or_signature_name(dirs):
    path = dirs["vision"] / "model_fp32.tflite"
    spec = {"name": "pixels", "shape": [1, 4, 4, 3], "dtype": "float32", "layout": "NHWC"}
    for name in ("pixels", "serving_default_pixels:0"):
        open_runner("litert", path, [{**spec, "name": name}]).run()


@pytest.mark.parametrize("file,runtime", [("model.onnx", "onnxruntime"), ("model_fp32.tflite", "litert")])
@pytest.mark.parametrize("change,message", [
    ({"shape": [1, 16]}, r"'tokens' is int32\[1, 8\] in the model but int32\[1, 16\] in the manifest"),
    ({"dtype": "int64"}, r"'tokens' is int32\[1, 8\] in the model but int64\[1, 8\]"),
    ({"name": "ids"}, r"the manifest lists input\(s\) \['ids'\] that the model does not have"),
    ({"high": 0}, r"needs integer 'low' < 'high'"),
])
def test_runner_rejects_inputs_that_differ_from_the_manifest(dirs, file, runtime, change, message):
    path = dirs["text"] / file
    with pytest.raises(RuntimeJobError, match=message) as error:
        open_runner(runtime, path, [{**TOKENS[0], **change}])
    assert str(path) in str(error.value) and "re-export" in str(error.value)


def test_runner_rejects_a_model_input_the_manifest_omits(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("a", "b"))
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "two", [x, y],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    spec = [{"name": "a", "shape": [1, 2], "dtype": "float32"}]
    with pytest.raises(RuntimeJobError, match=r"the model has input\(s\) \['b'\] that the manifest does not"):
        open_runner("onnxruntime", tmp_path / "two.onnx", spec)


@pytest.mark.parametrize("file,runtime", [("model.onnx", "onnxruntime"), ("model_fp32.tflite", "litert")])
def test_runner_reports_a_corrupt_file(dirs, file, runtime):
    path = dirs["text"] / file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    pattern = rf"cannot load {re.escape(str(path))} with {runtime}: .*re-export the artifact"
    with pytest.raises(RuntimeJobError, match=pattern):
        open_runner(runtime, path, TOKENS)


@pytest.mark.parametrize("module,runtime,package", [
    ("onnxruntime", "onnxruntime", "onnxruntime"),
    ("ai_edge_litert.interpreter", "litert", "ai-edge-litert"),
])
def test_missing_runtime_names_the_pip_package(dirs, monkeypatch, module, runtime, package):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(RuntimeJobError, match=rf"{runtime} is not installed.*`pip install {package}`"):
        open_runner(runtime, dirs["text"] / "model.onnx", TOKENS)


def test_unknown_runtime_and_graph_level(dirs):
    with pytest.raises(RuntimeJobError, match="unknown runtime 'tvm'; valid runtimes: onnxruntime, litert"):
        open_runner("tvm", dirs["text"] / "model.onnx", TOKENS)
    with pytest.raises(RuntimeJobError, match="unknown graph optimisation level 'O3'"):
        open_runner("onnxruntime", dirs["text"] / "model.onnx", TOKENS, graph_optimization="O3")


# ---- artifacts --------------------------------------------------------------------------------

def test_load_artifact_checks_manifest_and_file(dirs, tmp_path):
    text = dirs["text"]
    artifact = load_artifact(text / "model.onnx")
    assert (artifact.format, artifact.precision, artifact.runtime) == ("onnx", "fp32", "onnxruntime")
    with pytest.raises(RuntimeJobError, match=re.escape(f"{tmp_path / 'nowhere'} does not exist; export")):
        load_artifact(tmp_path / "nowhere" / "model.onnx")
    with pytest.raises(RuntimeJobError, match=r"no entry for model_int8.tflite \(it lists \['model.onnx'"):
        load_artifact(text / "model_int8.tflite")
    path = text / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(RuntimeJobError, match=rf"{re.escape(str(path))} is \d+ bytes with .*truncated"):
        load_artifact(path)
    (text / "manifest.json").write_text(json.dumps({"schema": "payattn.manifest/0"}))
    with pytest.raises(RuntimeJobError, match=r"schema 'payattn\.manifest/0', expected 'payattn\.manifest/"):
        load_artifact(path)
    (text / "manifest.json").unlink()
    with pytest.raises(RuntimeJobError, match=re.escape(f"{text} has no manifest.json, so it is not an")):
        load_artifact(path)


# ---- result lines -----------------------------------------------------------------------------

def test_result_line_follows_the_contract(result_line):
    validate_result(result_line)
    validate_result(json.dumps(result_line))
    assert result_line["artifact"]["file"] == "model.onnx" and result_line["runs"] == 3
    assert result_line["runtime"]["name"] == "onnxruntime" and result_line["task"] == "tiny-vision"
    latency = result_line["latency_ms"]
    ordered = [latency[k] for k in ("min", "p10", "p50", "p90", "p99", "max")]
    assert ordered[0] > 0 and ordered == sorted(ordered)


def _broken(line: dict, dotted: str, value) -> dict:
    line = json.loads(json.dumps(line))
    *parents, last = dotted.split(".")
    target = line
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return line


@pytest.mark.parametrize("dotted,value,message", [
    ("latency_ms.p50", KeyError, "key 'latency_ms.p50' is missing"),
    ("threads", "1", "key 'threads' must be integer, got string '1'"),
    ("runs", True, "key 'runs' must be integer, got boolean True"),
    ("init_ms", float("nan"), "key 'init_ms' must be a finite number"),
    ("device.kind", "usb", "key 'device.kind' must be one of local, ssh, adb"),
    ("runtime.name", "tvm", "key 'runtime.name' must be one of onnxruntime, litert, executorch, benchmark_model"),
    ("schema", "payattn.result/2", "key 'schema' must be 'payattn.result/1'"),
    ("device", "laptop", "key 'device' must be object"),
    ("artifact.colour", "red", "key 'artifact.colour' is not in payattn.result/1"),
    ("git_commit", 12, "key 'git_commit' must be string or null"),
    ("latency_ms.mean", None, "key 'latency_ms.mean' must be number, got null None"),
    ("latency_ms.max", None, "key 'latency_ms.max' must be number, got null None"),
    ("latency_ms.p50", "1.2", "key 'latency_ms.p50' must be number or null"),
    ("latency_ms.p90", float("inf"), "key 'latency_ms.p90' must be a finite number"),
    ("latency_ms.p90", -0.5, "key 'latency_ms.p90' must be ≥ 0"),
    ("artifact.sha256", "abc", "key 'artifact.sha256' must match"),
    ("timestamp", "yesterday", "key 'timestamp' must be an ISO 8601 date-time"),
])
def test_validate_result_names_the_offending_key(result_line, dotted, value, message):
    with pytest.raises(RuntimeJobError, match=re.escape(message)):
        validate_result(_broken(result_line, dotted, value))


def test_percentiles_may_be_null_for_tools_that_print_none(result_line):
    # benchmark_model on Android prints avg/std/min/max only; its lines must still validate.
    line = json.loads(json.dumps(result_line))
    line["latency_ms"].update(p10=None, p50=None, p90=None, p99=None)
    line["harness_overhead_ms"] = None
    validate_result(line)
    validate_result(json.dumps(line))


def test_append_results_only_adds_whole_lines(result_line, tmp_path):
    path = tmp_path / "results" / "r.jsonl"
    append_results(path, [result_line])
    append_results(path, [result_line, result_line])
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) == result_line for line in lines)
    before = path.read_bytes()
    with pytest.raises(RuntimeJobError, match="key 'runs' is missing"):
        append_results(path, [result_line, _broken(result_line, "runs", KeyError)])
    assert path.read_bytes() == before  # the valid first line was not written either
    path.write_bytes(before + b'{"half":')
    with pytest.raises(RuntimeJobError, match="ends in an incomplete line"):
        append_results(path, [result_line])


# ---- jobs -------------------------------------------------------------------------------------

def test_run_job_skips_artifacts_of_other_runtimes(dirs):
    seen = []
    results = run_job(job_for(dirs, runtimes=["litert"], git_commit=None), on_result=seen.append)
    assert [r["artifact"]["file"] for r in results] == ["model_fp32.tflite"] * 2
    assert seen == results and all(r["git_commit"] is None for r in results)


@pytest.mark.parametrize("change,message", [
    ({"runs": 0}, "job: key 'runs' must be ≥ 1 and ≤ 1000000, got 0"),
    ({"threads": [0]}, "job: key 'threads[0]' must be ≥ 1 and ≤ 256, got 0"),
    ({"runtimes": ["tvm"]}, "job: key 'runtimes[0]' must be one of onnxruntime, litert, executorch, got 'tvm'"),
    ({"device": {"name": "pi", "kind": "usb"}}, "job: key 'device.kind' must be one of local, ssh, adb"),
    ({"min_seconds": -1}, "job: key 'min_seconds' must be ≥ 0 and ≤ 3600, got -1"),
    ({"runs": 10**20}, "job: key 'runs' must be ≥ 1 and ≤ 1000000, got 100000000000000000000"),
    ({"threads": [100000]}, "job: key 'threads[0]' must be ≥ 1 and ≤ 256, got 100000"),
    ({"threads": []}, "job: key 'threads' must have at least 1 item(s)"),
    ({"warmup_seconds": float("nan")}, "job: key 'warmup_seconds' must be a finite number"),
    ({"timeout_seconds": 0}, "job: key 'timeout_seconds' must be ≥ 1 and ≤ 86400, got 0"),
    ({"artifacts": []}, "job: key 'artifacts' must have at least 1 item(s)"),
    ({"graph_optimization": "O3"}, "job: key 'graph_optimization' must be one of ORT_DISABLE_ALL"),
    ({"git_commit": 7}, "job: key 'git_commit' must be string or null, got integer 7"),
    ({"colour": "red"}, "job: key 'colour' is not in a benchmark job"),
])
def test_run_job_rejects_a_malformed_job(dirs, change, message):
    with pytest.raises(RuntimeJobError, match=re.escape(message)):
        run_job(job_for(dirs, **change))


def test_run_job_needs_a_matching_runtime(dirs):
    job = job_for(dirs, runtimes=["litert"])
    job["artifacts"] = [a for a in job["artifacts"] if a["path"].endswith(".onnx")]
    with pytest.raises(RuntimeJobError, match=r"runs on runtime\(s\) \['litert'\]"):
        run_job(job)


# A meta-path hook that makes torch, TensorFlow, onnx and every payattn module outside
# payattn.runtime unimportable, as on a device that has only numpy and the runtimes.
DEVICE_PRELUDE = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ("torch", "tensorflow", "tf_keras", "keras", "onnx") or (
                top == "payattn" and name != "payattn" and not name.startswith("payattn.runtime")):
            raise ImportError("blocked on the device: " + name)
sys.meta_path.insert(0, Block())
for name in [m for m in sys.modules if m.split(".")[0] in ("torch", "tensorflow", "onnx")]:
    del sys.modules[name]
sys.argv = ["payattn.runtime", sys.argv[1]]
runpy.run_module("payattn.runtime", run_name="__main__")
"""


def run_on_device(job_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", DEVICE_PRELUDE, str(job_path)], capture_output=True,
                          text=True, env=env, timeout=120, cwd=job_path.parent)


@pytest.mark.slow
def test_device_job_runs_without_torch_or_tensorflow(dirs, tmp_path):
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job_for(dirs)))
    done = run_on_device(job_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    for line in lines:
        validate_result(line)
    files = sorted((json.loads(line)["task"], json.loads(line)["runtime"]["name"]) for line in lines)
    assert files == [("tiny-text", "litert"), ("tiny-text", "onnxruntime"),
                     ("tiny-vision", "litert"), ("tiny-vision", "onnxruntime")]
    assert "measuring 4 configuration(s) interleaved" in done.stderr


def test_device_job_failure_is_one_line_on_stderr(dirs, tmp_path):
    broken = dirs["vision"] / "model.onnx"
    broken.write_bytes(broken.read_bytes()[:100])
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps(job_for(dirs)))
    done = run_on_device(job_path)
    assert done.returncode == 2 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {broken} is 100 bytes") and "export the model again" in last
    done = run_on_device(tmp_path / "missing.json")
    assert done.returncode == 2 and "error: cannot read job file" in done.stderr


# ---- environment ------------------------------------------------------------------------------

def test_device_info_describes_this_machine():
    info = device_info("bench-box", "ssh")
    assert (info["name"], info["kind"]) == ("bench-box", "ssh")
    assert info["cores"] == os.cpu_count() and info["memory_bytes"] > 2**28
    assert info["cpu"] and info["os"] and info["arch"]


def test_cpu_from_cpuinfo_names_arm_cores_and_x86_models():
    pi4 = "".join(f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n" for i in range(4))
    assert cpu_from_cpuinfo(pi4 + "Model\t: Raspberry Pi 4 Model B Rev 1.4\n") == "Cortex-A72"
    parts = ["0xd05"] * 4 + ["0xd0b"] * 2
    phone = "".join(f"CPU implementer\t: 0x41\nCPU part\t: {part}\n" for part in parts)
    assert cpu_from_cpuinfo(phone) == "4× Cortex-A55 + 2× Cortex-A76"
    x86 = "processor : 0\nmodel name : Intel(R) Core(TM) i7\nmodel : 85\n"
    assert cpu_from_cpuinfo(x86) == "Intel(R) Core(TM) i7"
    assert cpu_from_cpuinfo("") is None


def test_git_commit_of_this_checkout_and_without_git(monkeypatch):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert git_commit() == (head.stdout.strip() if head.returncode == 0 else None)
    monkeypatch.setenv("PATH", "")
    assert git_commit() is None


def test_litert_delegate_notice_is_silenced_but_real_errors_pass(dirs, capfd):
    from payattn.runtime.runners import quiet_native_stderr

    artifact = load_artifact(dirs["vision"] / "model_fp32.tflite")
    open_runner("litert", artifact.path, artifact.inputs).run()
    assert "XNNPACK" not in capfd.readouterr().err
    with quiet_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: real trouble\n")
    assert capfd.readouterr().err == "ERROR: real trouble\n"
