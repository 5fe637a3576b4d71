"""The benchmark_model output parser and the ADB device.

Parser samples are verbatim benchmark_model output pasted in public repositories (each test
names its source). The ADB runner is driven through a stand-in `adb` executable that this file
writes: a small Python script that logs its argv, keeps pushed files in a folder standing for
the phone's storage, and prints canned getprop output and a verbatim benchmark_model log. So
these tests check the command sequence and the parsing, not a real phone.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from schema_check import assert_valid
from tiny_artifacts import write_manifest

from payattn.devices import AdbDevice, AdbSettings, DeviceError, add_adb_device, get_device, run_on_devices
from payattn.devices.benchmark_model import BenchmarkModelParseError, parse_benchmark_model, parse_gpu_delegation
from payattn.devices.fleet import check_device
from payattn.runtime import validate_result
from payattn.runtime.artifacts import sha256_file

# synaptics-synap/doc, manual/nnapi.md ("Benchmarking Models with NNAPI"): current format with
# INFO: prefixes, a one-run warm-up (`count=1 curr=…`) and the TensorFlow version. Dedented.
SYNAP_NNAPI = textwrap.dedent("""\
    INFO: STARTING!
    INFO: Tensorflow Version : 2.15.0
    INFO: Log parameter values verbosely: [0]
    INFO: Graph: [/data/local/tmp/mobilenet_v1_0.25_224_quant.tflite]
    INFO: Use NNAPI: [1]
    INFO: NNAPI accelerator name: [synap-npu]
    INFO: NNAPI accelerators available: [synap-npu,nnapi-reference]
    INFO: Loaded model /data/local/tmp/mobilenet_v1_0.25_224_quant.tflite
    INFO: Initialized TensorFlow Lite runtime.
    INFO: Created TensorFlow Lite delegate for NNAPI.
    INFO: NNAPI delegate created.
    WARNING: NNAPI SL driver did not implement SL_ANeuralNetworksDiagnostic_registerCallbacks!
    VERBOSE: Replacing 31 out of 31 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 1 partitions for the whole graph.
    INFO: Explicitly applied NNAPI delegate, and the model graph will be completely executed by the delegate.
    INFO: The input model file size (MB): 0.497264
    INFO: Initialized session in 66.002ms.
    INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    INFO: count=1 curr=637079

    INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    INFO: count=520 first=2531 curr=2793 min=1171 max=9925 avg=1885.74 std=870

    INFO: Inference timings in us: Init: 66002, First inference: 637079, Warmup (avg): 637079, Inference (avg): 1885.74
    INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
    INFO: Memory footprint delta from the start of the tool (MB): init=7.40234 overall=7.83203
    """)

# ArmDeveloperEcosystem/arm-learning-paths, content/learning-paths/servers-and-cloud-computing/
# tensorflow-gcp/benchmarking.md (an earlier revision): a build that adds p5/median/p95.
ARM_MEDIAN = textwrap.dedent("""\
    INFO: Min num runs: [50]
    INFO: Num threads: [4]
    INFO: Min warmup runs: [5]
    INFO: Graph: [mobilenet_v2_224.tflite]
    INFO: Signature to run: []
    INFO: #threads used for CPU inference: [4]
    INFO: Loaded model mobilenet_v2_224.tflite
    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    INFO: The input model file size (MB): 13.9193
    INFO: Initialized session in 6.395ms.
    INFO: Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    INFO: count=153 first=2761 curr=2885 min=2605 max=18080 avg=3243.58 std=2165 p5=2630 median=2761 p95=5331

    INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    INFO: count=337 first=2881 curr=2703 min=2605 max=20356 avg=2942.27 std=1190 p5=2647 median=2781 p95=3169

    INFO: Inference timings in us: Init: 6395, First inference: 2761, Warmup (avg): 3243.58, Inference (avg): 2942.27
    INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
    INFO: Memory footprint delta from the start of the tool (MB): init=39.4531 overall=40.8281
    """)

# xudoong/EdgeVisionTransformer, README.md ("benchmark mobilenet_v2"): the older
# "Peak memory footprint (MB)" line, no INFO: prefix.
EDGE_VIT_OLD = textwrap.dedent("""\
    The input model file size (MB): 13.9926
    Initialized session in 0.847ms.
    Running benchmark for at least 30 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=30 first=57338 curr=46893 min=45730 max=57338 avg=47674.1 std=2073

    Running benchmark for at least 30 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=30 first=47632 curr=49309 min=44914 max=49309 avg=47440.3 std=1087

    Inference timings in us: Init: 847, First inference: 57338, Warmup (avg): 47674.1, Inference (avg): 47440.3
    Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
    Peak memory footprint (MB): init=1.26562 overall=26.6641
    """)

# Notes on ChromeOS's tast mlbenchmark.TFLite test ("selected test outputs", CPU run), which
# quote only the statistics lines and the periodic peak-memory line of
# `benchmark_model --min_secs=60 --report_peak_memory_footprint=true` (the search index did
# not name the repository holding the notes).
CROS_PERIODIC = textwrap.dedent("""\
    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    VERBOSE: Replacing 58 out of 58 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions for the whole graph.
    INFO: Initialized session in 3.337ms.
    INFO: count=9 first=81913 curr=55502 min=55502 max=81913 avg=58984.7 std=8115
    INFO: count=1061 first=56576 curr=56299 min=54669 max=60236 avg=56265.8 std=982
    INFO: Inference timings in us: Init: 3337, First inference: 81913, Warmup (avg): 58984.7, Inference (avg): 56265.8
    INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383
    """)

# yuenshome/yuenshome.github.io issue #77 ("tflite benchmark"): a 2018 build whose summary
# line is "Average inference timings in us: Warmup: …, Init: …, no stats: …".
OLD_2018 = textwrap.dedent("""\
    Loaded model /data/local/tmp/tflite/tfmodel/mobilenet_v1_1.0_224_quant.tflite
    resolved reporter
    Initialized session in 9.933ms
    Running benchmark for at least 4 iterations and at least 0.5 seconds
    count=7 first=127425 curr=66709 min=66709 max=127425 avg=76605.9 std=20944

    Running benchmark for at least 10 iterations and at least 1 seconds
    count=15 first=66753 curr=66800 min=66699 max=66838 avg=66767.6 std=39

    Average inference timings in us: Warmup: 76605.9, Init: 9933, no stats: 66767.6
    """)

# The same ChromeOS notes, GPU run (`--use_gpu=true --gpu_backend=cl`): the delegate takes the
# whole graph. Verbatim lines as the notes quote them.
GPU_FULL = textwrap.dedent("""\
    INFO: Created TensorFlow Lite delegate for GPU.
    VERBOSE: Replacing 58 out of 58 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions for the whole graph.
    INFO: Initialized OpenCL-based API.
    INFO: Created 1 GPU delegate kernels.
    INFO: Explicitly applied GPU delegate, and the model graph will be completely executed by the delegate.
    INFO: Initialized session in 842.225ms.
    INFO: count=13 first=115098 curr=36666 min=32079 max=115098 avg=40199.8 std=21694
    INFO: count=1694 first=35688 curr=33419 min=30394 max=42335 avg=35134.9 std=1733
    INFO: Inference timings in us: Init: 842225, First inference: 115098, Warmup (avg): 40199.8, Inference (avg): 35134.9
    INFO: Overall peak memory footprint (MB) via periodic monitoring: 74.6641
    """)

# GPU partly delegated. No public log of a whole such benchmark_model run was found, so this is
# two public logs joined: the delegate lines of a Qualcomm 450 (Mobilenet-SSD) log quoted in a
# tflite-android build README, verbatim with their logcat prefixes and the older "Replacing N
# node(s)" wording, then the timing lines of SYNAP_NNAPI above.
GPU_PARTIAL = textwrap.dedent("""\
    I/tflite: Initialized TensorFlow Lite runtime.
    I/tflite: Created TensorFlow Lite delegate for GPU.
    E/tflite: Following operations are not supported by GPU delegate:
        CUSTOM TFLite_Detection_PostProcess: TFLite_Detection_PostProcess
        63 operations will run on the GPU, and the remaining 1 operations will run on the CPU.
    I/tflite: Replacing 63 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions.
    """) + SYNAP_NNAPI.split("INFO: The input model file size (MB): 0.497264\n")[1]

# The GPU delegate failing, assembled from public logs, as no whole one was found: the
# unsupported-operator list verbatim from an iOS app's notes (TRANSPOSE_CONV version 4); the init
# error as a Pixel 10 run's notes quote it; "Node number N (…) failed to prepare" and "Restored
# original execution plan after delegate application failure." from a Flutter app's log (there
# the Metal delegate, here the Android one's name); "Failed to apply GPU delegate." and
# "Benchmarking failed." as a benchmark harness's test data quotes benchmark_model. The tool then
# exits non-zero with no timings.
GPU_FAILING = textwrap.dedent("""\
    INFO: Created TensorFlow Lite delegate for GPU.
    ERROR: Following operations are not supported by GPU delegate:
    DEQUANTIZE:
    TRANSPOSE_CONV: Max version supported: 3. Requested version 4.
    123 operations will run on the GPU, and the remaining 156 operations will run on the CPU.
    ERROR: TfLiteGpuDelegate Init: Unrecognized Write selector
    ERROR: Node number 279 (TfLiteGpuDelegateV2) failed to prepare.
    ERROR: Restored original execution plan after delegate application failure.
    ERROR: Failed to apply GPU delegate.
    Benchmarking failed.
    """)

MB = 1024 * 1024


def test_parse_current_format_with_one_run_warmup():
    out = parse_benchmark_model(SYNAP_NNAPI)
    assert (out.warmup.count, out.warmup.curr) == (1, 637079)
    assert out.inference.count == 520
    assert out.init_ms == pytest.approx(66.002)
    assert out.first_inference_ms == pytest.approx(637.079)
    assert out.peak_memory_bytes == round(7.83203 * MB)
    assert out.version == "2.15.0"
    assert out.latency_ms() == pytest.approx({"mean": 1.88574, "std": 0.870, "min": 1.171, "p10": None,
                                              "p50": None, "p90": None, "p99": None, "max": 9.925})


def test_parse_median_when_printed():
    out = parse_benchmark_model(ARM_MEDIAN)
    assert (out.warmup.count, out.inference.count) == (153, 337)
    latency = out.latency_ms()
    assert latency["p50"] == pytest.approx(2.781)  # median=2781 of the measured phase, not the warm-up's 2761
    assert latency["mean"] == pytest.approx(2.94227) and latency["max"] == pytest.approx(20.356)
    assert (latency["p10"], latency["p90"], latency["p99"]) == (None, None, None)  # p5/p95 are not p10/p90
    assert out.peak_memory_bytes == round(40.8281 * MB)
    assert out.version is None


def test_parse_older_peak_memory_line():
    out = parse_benchmark_model(EDGE_VIT_OLD)
    assert (out.warmup.count, out.inference.count) == (30, 30)
    assert out.inference.avg == pytest.approx(47440.3)
    assert out.init_ms == pytest.approx(0.847)
    assert out.peak_memory_bytes == round(26.6641 * MB)


def test_parse_periodic_peak_and_statistics_lines_only():
    out = parse_benchmark_model(CROS_PERIODIC)
    assert out.inference.count == 1061 and out.warmup.count == 9
    assert out.latency_ms()["std"] == pytest.approx(0.982)
    assert out.peak_memory_bytes == round(93.2383 * MB)


def test_parse_2018_summary_line():
    out = parse_benchmark_model(OLD_2018)
    assert out.inference.count == 15
    assert out.init_ms == pytest.approx(9.933)
    assert out.first_inference_ms == pytest.approx(127.425)  # the warm-up's first run
    assert out.peak_memory_bytes is None


def test_parse_rejects_output_without_a_measured_phase():
    with pytest.raises(BenchmarkModelParseError, match="no measured statistics line"):
        parse_benchmark_model("INFO: STARTING!\nERROR: Could not open 'model.tflite'.\n")


# -- the ADB device, through a stand-in adb ---------------------------------------------------

FAKE_ADB = '''\
#!{python}
"""Stand-in for adb: logs argv, keeps pushed files under $FAKE_ADB_ROOT, prints canned output."""
import hashlib, json, os, shlex, shutil, sys
from pathlib import Path

root = Path(os.environ["FAKE_ADB_ROOT"])
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
serial = args[1] if args[:1] == ["-s"] else None
args = args[2:] if serial else args
state = os.environ.get("FAKE_ADB_STATE", "device")
if state == "missing":
    sys.exit(print(f"error: device '{{serial}}' not found", file=sys.stderr) or 1)
if state == "unauthorized":
    sys.exit(print("error: device unauthorized.", file=sys.stderr) or 1)
phone = lambda path: root / path.lstrip("/")
if args[0] == "get-state":
    print("device")
elif args[0] == "push":
    source, target = args[1], phone(args[2])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    print(f"{{source}}: 1 file pushed, 0 skipped.")
elif args[0] == "shell" and args[1].startswith("getprop"):
    print(os.environ["FAKE_GETPROP"])
elif args[0] == "shell" and "sha256sum" in args[1]:
    words = shlex.split(args[1])
    start = next(i for i, w in enumerate(words) if w.endswith("sha256sum")) + 1
    for path in words[start:]:
        if path.startswith("2>"):
            break
        if phone(path).exists():
            print(hashlib.sha256(phone(path).read_bytes()).hexdigest() + "  " + path)
elif args[0] == "shell" and "--graph=" in args[1]:
    words = shlex.split(args[1])
    binary = words[2] if words[0] == "taskset" else words[0]
    if not phone(binary).exists():
        sys.exit(print(f"/system/bin/sh: {{binary}}: inaccessible or not found", file=sys.stderr) or 127)
    runs = root / "runs"
    done = int(runs.read_text()) if runs.exists() else 0
    runs.write_text(str(done + 1))
    if done >= int(os.environ.get("FAKE_ADB_DROP_AFTER", "1000")):
        sys.exit(print("error: closed", file=sys.stderr) or 1)
    profiled = "--enable_op_profiling=true" in words and "FAKE_PROFILE_OUTPUT" in os.environ
    gpu = "--use_gpu=true" in words and "FAKE_GPU_OUTPUT" in os.environ
    output = "FAKE_PROFILE_OUTPUT" if profiled else "FAKE_GPU_OUTPUT" if gpu else "FAKE_BENCHMARK_OUTPUT"
    sys.stderr.write(Path(os.environ[output]).read_text())
    sys.exit(int(os.environ.get("FAKE_GPU_EXIT", "0")) if gpu else 0)
'''

# Canned values standing in for a phone's `getprop`, /proc/meminfo and CPU list.
GETPROP = textwrap.dedent("""\
    [ro.board.platform]: [gs201]
    [ro.build.version.release]: [14]
    [ro.build.version.sdk]: [34]
    [ro.product.cpu.abi]: [arm64-v8a]
    [ro.product.model]: [Pixel 7]
    [ro.soc.model]: [GS201]
    ==payattn==
    MemTotal:        7857140 kB
    MemFree:          246720 kB
    ==payattn==
    0-7""")


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A stand-in adb on a fresh 'phone', a fake benchmark_model binary and a registry entry."""
    adb = tmp_path / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(0o755)
    (tmp_path / "phone").mkdir()
    output = tmp_path / "benchmark_model.log"
    output.write_text(SYNAP_NNAPI)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "phone"))
    monkeypatch.setenv("FAKE_ADB_LOG", str(tmp_path / "adb.log"))
    monkeypatch.setenv("FAKE_GETPROP", GETPROP)
    monkeypatch.setenv("FAKE_BENCHMARK_OUTPUT", str(output))
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + (0xB7).to_bytes(2, "little") + bytes(100))
    devices = tmp_path / "devices.toml"
    add_adb_device("pixel", "R5CT1234", benchmark_model=str(binary), cpu_mask="f0", path=devices)
    return {"adb": str(adb), "devices": devices, "log": tmp_path / "adb.log", "root": tmp_path / "phone"}


@pytest.fixture
def tflite_job(tmp_path):
    """Two .tflite artifacts (their bytes are never interpreted: benchmark_model is a stand-in)
    and one .onnx that an adb device must skip."""
    entries = []
    for mechanism in ("standard", "efficient"):
        directory = tmp_path / f"art-{mechanism}"
        directory.mkdir()
        (directory / "model_fp32.tflite").write_bytes(mechanism.encode() * 100)
        (directory / "model.onnx").write_bytes(b"onnx")
        spec = [{"name": "pixels", "shape": [1, 4, 4, 3], "dtype": "float32", "layout": "NHWC"}]
        write_manifest(directory, mechanism, "vision", {"model_fp32.tflite": spec, "model.onnx": spec})
        entries += [{"path": str(directory / "model_fp32.tflite"), "manifest": str(directory / "manifest.json")},
                    {"path": str(directory / "model.onnx"), "manifest": str(directory / "manifest.json")}]
    return {"artifacts": entries, "runtimes": ["onnxruntime", "litert"], "threads": [1, 4], "warmup_runs": 3,
            "warmup_seconds": 0.5, "runs": 50, "min_seconds": 1.0, "device": {"name": "x", "kind": "local"}}


def logged(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_adb_bench_command_sequence_and_results(phone, tflite_job):
    spec = get_device("pixel", phone["devices"])
    device = AdbDevice(spec, AdbSettings(adb=phone["adb"], use_xnnpack=False))
    run = device.bench(tflite_job)
    calls = logged(phone["log"])
    assert all(call[:2] == ["-s", "R5CT1234"] for call in calls)
    verbs = [call[2] if call[2] != "shell" else "shell " + call[3].split()[0] for call in calls]
    assert verbs == ["get-state", "shell getprop;", "shell mkdir", "push", "push", "push", "shell chmod"] + \
        ["shell taskset"] * 4
    pushed = [call[4] for call in calls if call[2] == "push"]
    assert pushed[0] == "/data/local/tmp/payattn/benchmark_model"
    assert [p.rsplit("/", 1)[1] for p in pushed[1:]] == ["model_fp32.tflite"] * 2
    assert len({p.rsplit("/", 1)[0] for p in pushed[1:]}) == 2  # one folder per artifact dir
    first = calls[-4][3].split()
    assert first[:3] == ["taskset", "f0", "/data/local/tmp/payattn/benchmark_model"]
    assert first[3:] == [f"--graph={pushed[1]}", "--num_threads=1", "--warmup_runs=3", "--warmup_min_secs=0.5",
                         "--num_runs=50", "--min_secs=1.0", "--use_xnnpack=false"]
    assert [c[3].split()[4] for c in calls[-4:]] == ["--num_threads=1"] * 2 + ["--num_threads=4"] * 2

    assert len(run.results) == 4
    tflites = [a["path"] for a in tflite_job["artifacts"] if a["path"].endswith(".tflite")]
    assert run.bytes_copied == sum(Path(p).stat().st_size for p in [spec.benchmark_model, *tflites])
    result = run.results[0]
    validate_result(result)
    assert_valid(result, "result")
    assert result["device"] == {"name": "pixel", "kind": "adb", "cpu": "GS201 (Pixel 7)", "cores": 8,
                                "os": "Android 14", "arch": "arm64-v8a", "memory_bytes": 7857140 * 1024,
                                "emulated": None}
    assert result["runtime"] == {"name": "benchmark_model", "version": "2.15.0", "graph_optimization": None,
                                 "sha256": sha256_file(Path(spec.benchmark_model))}
    assert result["accelerator"] == "cpu" and "delegation" not in result
    assert result["mechanism"] == "standard" and result["artifact"]["path"] == tflite_job["artifacts"][0]["path"]
    assert (result["threads"], result["warmup_runs"], result["runs"]) == (1, 1, 520)
    assert result["latency_ms"]["mean"] == pytest.approx(1.88574) and result["latency_ms"]["p50"] is None
    assert result["init_ms"] == pytest.approx(66.002)

    again = device.bench(tflite_job)  # unchanged files are not pushed again
    assert again.bytes_copied == 0
    assert not [c for c in logged(phone["log"])[len(calls):] if c[2] == "push"]


def test_adb_device_missing_or_unauthorised(phone, tflite_job, monkeypatch):
    device = AdbDevice(get_device("pixel", phone["devices"]), AdbSettings(adb=phone["adb"]))
    monkeypatch.setenv("FAKE_ADB_STATE", "missing")
    with pytest.raises(DeviceError, match=r"device 'pixel': no phone with serial R5CT1234 is connected.*adb devices"):
        device.bench(tflite_job)
    monkeypatch.setenv("FAKE_ADB_STATE", "unauthorized")
    with pytest.raises(DeviceError, match="accept the USB debugging prompt"):
        device.bench(tflite_job)


def test_adb_missing_benchmark_model(phone, tflite_job):
    spec = get_device("pixel", phone["devices"])
    Path(spec.benchmark_model).unlink()
    with pytest.raises(DeviceError, match="benchmark_model not found at .*bazel build"):
        AdbDevice(spec, AdbSettings(adb=phone["adb"])).bench(tflite_job)
    check = check_device("pixel", devices_file=phone["devices"], adb=AdbSettings(adb=phone["adb"]))
    assert not check.ok and "benchmark_model not found" in check.problems[0]


def test_adb_benchmark_model_not_on_phone(phone, tflite_job, monkeypatch):
    device = AdbDevice(get_device("pixel", phone["devices"]), AdbSettings(adb=phone["adb"]))
    monkeypatch.setattr(device, "sync", lambda files, log: 0)  # the push "did not happen"
    with pytest.raises(DeviceError, match="benchmark_model could not be started on the phone"):
        device.bench(tflite_job)


def test_adb_check_reports_phone_facts(phone):
    check = check_device("pixel", devices_file=phone["devices"], adb=AdbSettings(adb=phone["adb"]))
    assert check.ok, check.problems
    assert check.facts["cpu"] == "GS201 (Pixel 7)" and check.facts["arch"] == "arm64-v8a"
    assert check.describe().endswith("OK: ready to benchmark")


def test_adb_drop_mid_run_keeps_measured_results(phone, tflite_job, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_DROP_AFTER", "1")
    results_file = tmp_path / "results.jsonl"
    results, failures = run_on_devices(["pixel"], tflite_job, results_file, devices_file=phone["devices"],
                                       adb=AdbSettings(adb=phone["adb"]))
    assert len(results) == 1
    assert [f.device for f in failures] == ["pixel"]
    assert "disconnected mid-run" in failures[0].message and "1 result(s) measured before it are kept" in failures[0].message
    lines = results_file.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["device"]["name"] == "pixel"


def test_adb_job_without_tflite_is_an_error(phone, tflite_job):
    tflite_job["artifacts"] = [a for a in tflite_job["artifacts"] if a["path"].endswith(".onnx")]
    with pytest.raises(DeviceError, match="no .tflite artifact"):
        AdbDevice(get_device("pixel", phone["devices"]), AdbSettings(adb=phone["adb"])).bench(tflite_job)
    assert not os.path.exists(phone["log"]) or not [c for c in logged(phone["log"]) if c[2] == "push"]


def test_adb_profile_is_a_second_run_with_op_profiling(phone, tflite_job, tmp_path, monkeypatch):
    from test_profile import BENCHMARK_MODEL_PROFILE

    (tmp_path / "profiled.log").write_text(SYNAP_NNAPI + BENCHMARK_MODEL_PROFILE)
    monkeypatch.setenv("FAKE_PROFILE_OUTPUT", str(tmp_path / "profiled.log"))
    device = AdbDevice(get_device("pixel", phone["devices"]), AdbSettings(adb=phone["adb"]))
    run = device.bench({**tflite_job, "threads": [1], "profile": True})
    runs = [call[3] for call in logged(phone["log"]) if call[2] == "shell" and "--graph=" in call[3]]
    assert ["--enable_op_profiling=true" in command for command in runs] == [False, True] * 2
    result = run.results[0]
    validate_result(result)
    assert result["runs"] == 520 and result["profile"]["source"] == "benchmark_model"
    assert [o["op"] for o in result["profile"]["operators"]] == ["TfLiteXNNPackDelegate", "GATHER", "CAST"]


# -- the GPU delegate -----------------------------------------------------------------------------

def test_parse_gpu_delegation_from_the_tools_own_lines():
    full = parse_gpu_delegation(GPU_FULL)
    assert (full.status, full.nodes_delegated, full.nodes_total, full.partitions) == ("full", 58, 58, 1)
    partial = parse_gpu_delegation(GPU_PARTIAL)
    assert (partial.status, partial.nodes_delegated, partial.nodes_total, partial.partitions) == ("partial", 63, 64, 2)
    assert partial.unsupported == ["CUSTOM TFLite_Detection_PostProcess: TFLite_Detection_PostProcess"]
    assert "63 operations will run on the GPU, and the remaining 1 operations will run on the CPU" in partial.evidence
    failing = parse_gpu_delegation(GPU_FAILING)
    assert failing.status == "none" and failing.unsupported == ["DEQUANTIZE", "TRANSPOSE_CONV: Max version "
                                                                "supported: 3. Requested version 4."]
    assert failing.evidence == "ERROR: Restored original execution plan after delegate application failure."
    assert parse_gpu_delegation(CROS_PERIODIC).status == "none"  # an XNNPACK run is no GPU run


@pytest.fixture
def gpu_phone(phone, tmp_path, monkeypatch):
    """The stand-in phone answering `--use_gpu=true` runs with the log named by `answer`."""
    def answer(text: str, exit_code: int = 0) -> None:
        (tmp_path / "gpu.log").write_text(text)
        monkeypatch.setenv("FAKE_GPU_OUTPUT", str(tmp_path / "gpu.log"))
        monkeypatch.setenv("FAKE_GPU_EXIT", str(exit_code))
    return answer


def bench_runs(log: Path) -> list[list[str]]:
    return [call[3].split() for call in logged(log) if call[2] == "shell" and "--graph=" in call[3]]


def test_gpu_fully_delegated_beside_cpu(phone, gpu_phone, tflite_job):
    gpu_phone(GPU_FULL)
    device = AdbDevice(get_device("pixel", phone["devices"]), AdbSettings(adb=phone["adb"], accelerators=("cpu", "gpu")))
    run = device.bench({**tflite_job, "threads": [1]})
    runs = bench_runs(phone["log"])
    assert ["--use_gpu=true" in w for w in runs] == [False, True] * 2
    assert all(w[-2:] == ["--use_gpu=true", "--gpu_precision_loss_allowed=false"] for w in runs if "--use_gpu=true" in w)
    assert [r["accelerator"] for r in run.results] == ["cpu", "gpu"] * 2
    for result in run.results:
        validate_result(result)
        assert_valid(result, "result")
    gpu = run.results[1]
    assert gpu["latency_ms"]["mean"] == pytest.approx(35.1349) and gpu["init_ms"] == pytest.approx(842.225)
    assert gpu["delegation"] == {"status": "full", "nodes_delegated": 58, "nodes_total": 58, "partitions": 1,
                                 "unsupported": [], "evidence": "Replacing 58 out of 58 node(s) with delegate "
                                 "(TfLiteGpuDelegateV2) node, yielding 1 partitions"}
    assert run.results[0]["latency_ms"]["mean"] == pytest.approx(1.88574) and "delegation" not in run.results[0]


def test_gpu_precision_loss_only_when_asked(phone, gpu_phone, tflite_job):
    gpu_phone(GPU_FULL)
    settings = AdbSettings(adb=phone["adb"], accelerators=("gpu",), gpu_precision_loss=True)
    AdbDevice(get_device("pixel", phone["devices"]), settings).bench({**tflite_job, "threads": [1]})
    assert [w[-1] for w in bench_runs(phone["log"])] == ["--gpu_precision_loss_allowed=true"] * 2


def test_gpu_partly_delegated_says_so(phone, gpu_phone, tflite_job):
    gpu_phone(GPU_PARTIAL)
    lines: list[str] = []
    device = AdbDevice(get_device("pixel", phone["devices"]), AdbSettings(adb=phone["adb"], accelerators=("gpu",)))
    run = device.bench({**tflite_job, "threads": [1]}, log=lines.append)
    assert [r["delegation"]["status"] for r in run.results] == ["partial", "partial"]
    assert run.results[0]["delegation"]["unsupported"] == ["CUSTOM TFLite_Detection_PostProcess: "
                                                           "TFLite_Detection_PostProcess"]
    assert any("gpu: the delegate took part of the graph (Replacing 63 node(s)" in line for line in lines)
    from payattn.views import result_row

    assert result_row(run.results[0]).endswith("runs 520  GPU took 63 of 64 nodes")
    assert "benchmark_model gpu" in result_row(run.results[0])


@pytest.mark.parametrize("output, exit_code", [
    (GPU_FAILING, 1),  # the tool gives up
    (GPU_FAILING.replace("Benchmarking failed.\n", "") + SYNAP_NNAPI, 0),  # the tool times the CPU plan
])
def test_gpu_not_applied_writes_no_gpu_line(phone, gpu_phone, tflite_job, tmp_path, output, exit_code):
    gpu_phone(output, exit_code)
    manifest = Path(tflite_job["artifacts"][0]["manifest"])  # as export records LiteRT's analyzer
    document = json.loads(manifest.read_text())
    document["artifacts"][0]["gpu"] = {"compatible": False, "issues": ["TRANSPOSE_CONV: op version 4"],
                                       "analyzer": "ai-edge-litert 2.3.0"}
    manifest.write_text(json.dumps(document))
    results_file = tmp_path / "results.jsonl"
    results, failures = run_on_devices(["pixel"], {**tflite_job, "threads": [1]}, results_file,
                                       devices_file=phone["devices"],
                                       adb=AdbSettings(adb=phone["adb"], accelerators=("cpu", "gpu")))
    assert [r["accelerator"] for r in results] == ["cpu", "cpu"]
    assert [json.loads(line)["accelerator"] for line in results_file.read_text().splitlines()] == ["cpu", "cpu"]
    assert [f.device for f in failures] == ["pixel"]
    assert failures[0].message.startswith("device 'pixel': the GPU delegate was not applied in 2 run(s), so they "
                                          "have no gpu line (model_fp32.tflite at 1 thread(s): ERROR: Restored "
                                          "original execution plan after delegate application failure.; the "
                                          "export's GPU check had flagged it: TRANSPOSE_CONV: op version 4;")
    assert "the 2 line(s) measured are kept" in failures[0].message
