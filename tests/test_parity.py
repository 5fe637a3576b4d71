"""On-device parity (`payattn verify`) on this machine, the 32-bit LiteRT fallback, the device
requirements; the same checks on an arm64 board are in test_emulated_pi.py."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from schema_check import assert_valid
from tiny_artifacts import copy_artifact_dirs
from typer.testing import CliRunner

from payattn.cli import app
from payattn.bench import build_job
from payattn.devices import AdbDevice, DeviceError, DeviceSpec, verify_on_devices
from payattn.devices.fleet import DeviceCheck, check_harness_facts
from payattn.runtime.parity import REFERENCE_FILES, run_verify_job

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def reference_dir(tmp_path: Path, file: str) -> Path:
    """The tiny vision dir reduced to `file`, with reference inputs (NCHW, 3 random + 20 test)
    and that file's own outputs for them as the reference, and the export's fp32 tolerances."""
    directory = copy_artifact_dirs(tmp_path)["vision"]
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["artifacts"] = [e for e in manifest["artifacts"] if e["file"] == file]
    inputs = np.random.default_rng(5).standard_normal((23, 3, 4, 4)).astype(np.float32)
    outputs = np.concatenate([run_directly(directory / file, inputs[i:i + 1]) for i in range(len(inputs))])
    manifest["verification"].update(max_abs_diff={"fp32": 1e-4, "fp16": 1e-2},
                                    min_top1_agreement={"fp32": 0.98})
    (directory / "manifest.json").write_text(json.dumps(manifest))
    write_reference(directory, inputs, outputs, random_inputs=3)
    return directory


def run_directly(path: Path, x: np.ndarray) -> np.ndarray:
    """The model's output computed here without payattn: ORT on NCHW, LiteRT on NHWC."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1).copy())
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def write_reference(directory: Path, inputs: np.ndarray, outputs: np.ndarray, random_inputs: int) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = {"random_inputs": random_inputs, "test_samples": len(inputs) - random_inputs, "layout": "PyTorch"}
    for key, array in (("inputs", inputs), ("outputs", outputs)):
        path = directory / REFERENCE_FILES[key]
        np.save(path, array)
        entry[key] = {"file": path.name, "shape": list(array.shape), "dtype": array.dtype.name,
                      "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest["reference"] = entry
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("file", ["model.onnx", "model_fp32.tflite"])
def test_verify_passes_on_the_models_own_outputs(tmp_path: Path, file: str) -> None:
    directory = reference_dir(tmp_path, file)
    out = runner.invoke(app, ["verify", str(directory)])
    assert out.exit_code == 0, out.output
    assert file in out.output and "pass" in out.output and "FAIL" not in out.output
    (line,), failures = verify_on_devices(["local"], build_job([directory]))
    assert not failures and line["passed"] and line["parity"]["samples"] == 23
    assert_valid(line, "parity")  # the published schema, checked by jsonschema


def test_verify_fails_beyond_the_export_tolerances(tmp_path: Path) -> None:
    directory = reference_dir(tmp_path, "model_fp32.tflite")
    outputs = np.load(directory / REFERENCE_FILES["outputs"])
    inputs = np.load(directory / REFERENCE_FILES["inputs"])
    outputs[0] += 1e-3  # a random input: over the fp32 limit, top-1 untouched
    outputs[3:] = -outputs[3:]  # every test sample: the top-1 class flips
    write_reference(directory, inputs, outputs, random_inputs=3)
    out = runner.invoke(app, ["verify", str(directory)])
    assert out.exit_code == 1, out.output
    text = " ".join(out.output.split())  # the console wraps long lines
    assert "FAIL" in text
    assert re.search(r"max abs logit difference \S+ vs PyTorch exceeds the fp32 tolerance 0.0001", text)
    assert "top-1 agreement with PyTorch 0.00% is below 98% on 20 test samples" in text


def test_verify_without_executorch_checks_the_other_runtimes(tmp_path: Path, monkeypatch) -> None:
    """A .pte beside an ONNX file where ExecuTorch is missing: one line naming the install, and
    the ONNX file is still checked (the .pte is ExecuTorch's own do-nothing program)."""
    from payattn.runtime.noop import noop_model

    directory = reference_dir(tmp_path, "model.onnx")
    manifest = json.loads((directory / "manifest.json").read_text())
    data = noop_model("executorch", manifest["artifacts"][0]["inputs"])
    (directory / "model_fp32.pte").write_bytes(data)
    manifest["artifacts"].append({**manifest["artifacts"][0], "file": "model_fp32.pte", "format": "pte",
                                  "precision": "fp32", "converter": "executorch", "bytes": len(data),
                                  "sha256": hashlib.sha256(data).hexdigest()})
    (directory / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)  # the harness in this process
    said: list[str] = []
    lines = run_verify_job(build_job([directory]) | {"task": "verify"}, log=said.append)
    assert [(line["artifact"]["file"], line["passed"]) for line in lines] == [("model.onnx", True)]
    assert [message for message in said if ".pte" in message or message.startswith("executorch")] == [
        "executorch is not installed here (import of executorch.runtime halted; None in sys.modules); "
        "install it with `pip install executorch==1.5.1`; its artifacts are skipped"]


def test_changed_reference_file_is_a_clear_error(tmp_path: Path) -> None:
    directory = reference_dir(tmp_path, "model.onnx")
    np.save(directory / REFERENCE_FILES["outputs"], np.zeros((23, 5), np.float32))
    out = runner.invoke(app, ["verify", str(directory)])
    text = " ".join(out.output.split())
    assert out.exit_code == 1 and "Traceback" not in text
    assert "differs from its sha256" in text and "payattn export" in text


def test_dir_exported_without_references_says_to_export_again(tmp_path: Path) -> None:
    directory = copy_artifact_dirs(tmp_path)["text"]
    out = runner.invoke(app, ["verify", str(directory)])
    assert out.exit_code == 1 and "lists no reference inputs and outputs" in " ".join(out.output.split())


def test_android_says_parity_is_not_available(tmp_path: Path) -> None:
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    device = AdbDevice(DeviceSpec(name="phone", kind="adb", serial="X", benchmark_model=str(binary)))
    with pytest.raises(DeviceError, match="parity is not available on Android"):
        device.bench({"task": "verify", "artifacts": [], "runtimes": ["litert"]})


def test_litert_falls_back_to_tflite_runtime(tmp_path: Path) -> None:
    """Without ai_edge_litert the harness and the probe use tflite_runtime.interpreter (here a
    package exposing LiteRT's own Interpreter under that name, as tflite-runtime does)."""
    shim = tmp_path / "site" / "tflite_runtime"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("__version__ = '2.13.0'\n")
    (shim / "interpreter.py").write_text("import sys\nInterpreter = sys.modules['_litert'].Interpreter\n")
    info = tmp_path / "site" / "tflite_runtime-2.13.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tflite-runtime\nVersion: 2.13.0\n")
    directory = copy_artifact_dirs(tmp_path / "a")["vision"]
    code = f"""
import json, sys
import ai_edge_litert.interpreter
sys.modules["_litert"] = ai_edge_litert.interpreter
for name in [m for m in sys.modules if m.startswith("ai_edge_litert")]:
    sys.modules[name] = None  # not installed, as on 32-bit ARM
sys.path.insert(0, {str(tmp_path / "site")!r})
from payattn.runtime.env import runtime_versions
from payattn.runtime.artifacts import load_artifact
from payattn.runtime.runners import open_runner, runtime_module
artifact = load_artifact({str(directory / "model_fp32.tflite")!r})
runner = open_runner("litert", artifact.path, artifact.inputs)
runner.run()
print(json.dumps([runtime_module("litert").__name__, runner.version, runtime_versions()["litert"]]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [
        "tflite_runtime.interpreter", "tflite-runtime 2.13.0", "tflite-runtime 2.13.0"]


def test_check_on_32_bit_arm_says_onnxruntime_is_unavailable() -> None:
    facts = {"arch": "armv7l", "python": "3.9.2",
             "runtimes": {"numpy": "1.26.4", "onnxruntime": None, "litert": "tflite-runtime 2.13.0"}}
    check = DeviceCheck(name="pi3", kind="ssh", target="pi@pi3", facts=facts)
    check_harness_facts(check, facts, "python3")
    assert check.ok and "ONNX Runtime is unavailable" in check.notes[0] and "--runtime litert" in check.notes[0]
    facts["runtimes"]["litert"] = None
    check = DeviceCheck(name="pi3", kind="ssh", target="pi@pi3", facts=facts)
    check_harness_facts(check, facts, "python3")
    assert check.install == "python3 -m pip install numpy==1.26.4 tflite-runtime==2.13.0"


def test_device_requirements_are_numpy_and_the_runtimes_pinned_as_tested() -> None:
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split())
    names = set()
    for line in (REPO / "requirements-device.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if not requirement:
            continue
        spec, _, marker = requirement.partition(";")
        name, version = spec.strip().split("==")
        names.add(name)
        if "!=" in marker:  # the 64-bit line: the versions the export side is tested with
            assert pins[name] == version, name
    assert names == {"numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime"}
