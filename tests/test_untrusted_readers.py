"""Each reader of an untrusted file, on the faults that once ended in a traceback or a wrong
word, through the real commands: one `error:` line naming the file, what is wrong and the
fix, within a stated bound, and nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from fuzzing import outcome
from tiny_artifacts import copy_artifact_dirs
from typer.testing import CliRunner

from payattn.cli import app

SECONDS = 10  # every refusal here comes before any model is built or trained


def refuse(args: list[str], *expected: str) -> str:
    """Run a command in-process; it must refuse with one error line holding `expected`."""
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    assert outcome(result) == "refused", (outcome(result), result.output, result.stderr)
    line = result.stderr.strip()
    for text in expected:
        assert text in line, line
    assert time.perf_counter() - started < SECONDS
    return line


@pytest.fixture(scope="module")
def tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_artifact_dirs(tmp_path_factory.mktemp("readers"))["vision"] / "model_fp32.tflite"


def damaged(tflite: Path, tmp_path: Path, name: str) -> Path:
    data = bytearray(tflite.read_bytes())
    if name == "truncated":
        data = data[:len(data) // 2]
    elif name == "header-only":
        data = data[:8]
    else:  # length-corrupted: the first vector's length made far larger than the file
        root = int.from_bytes(data[0:4], "little")
        data[root:root + 4] = (len(data) * 4).to_bytes(4, "little")
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name", ["truncated", "header-only", "length-corrupted"])
def test_inspect_refuses_a_damaged_tflite_in_one_line(tflite: Path, tmp_path: Path, name: str) -> None:
    path = damaged(tflite, tmp_path, name)
    refuse(["inspect", str(path)], str(path), "is not a sound TFLite flatbuffer", "export")


def test_inspect_says_what_a_path_is_instead_of_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.tflite"
    os.mkfifo(fifo)
    assert "is a directory, not a file" in refuse(["inspect", str(tmp_path)])
    assert "is a FIFO, not a regular file" in refuse(["inspect", str(fifo)])  # and does not hang
    assert "is a character device" in refuse(["inspect", os.devnull])
    assert "does not exist" in refuse(["inspect", str(tmp_path / "nope.tflite")])


def sweep_folder(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.json").write_text(text)
    return folder


BAD_POINTS = json.dumps({"schema": "payattn.sweep/1", "payattn_version": "0",
                         "spec": {"task": "mnist-5k", "mechanisms": ["standard"], "seeds": [0],
                                  "presets": ["mnist-tiny"], "options": {}, "epochs": 1, "data_dir": None},
                         "points": 5})


@pytest.mark.parametrize("command", ["sweep", "report"])
@pytest.mark.parametrize("text, words", [
    (BAD_POINTS, "'points' must be a list, got int"),
    (BAD_POINTS[:40], "not valid JSON"),
    (BAD_POINTS.replace('"points": 5', '"points": [{"id": "a", "variant": "..", "run_dir": "../../etc",'
                        ' "mechanism": "standard", "seed": 0, "setting": {}, "status": "done"}]'),
     "is not a folder inside the sweep"),
])
def test_a_damaged_sweep_index_is_one_line_with_a_fix_that_works(tmp_path: Path, command: str, text: str,
                                                                words: str) -> None:
    folder = sweep_folder(tmp_path, text)
    args = (["sweep", "-m", "standard", "--seeds", "1", "--out", str(folder)] if command == "sweep"
            else ["report", "--sweep", str(folder), "--out", str(tmp_path / "report")])
    line = refuse(args, str(folder / "sweep.json"), words, "delete or move")
    assert "to create it" not in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sweep", "sweep.json"]  # nothing written


def test_a_config_whose_image_size_does_not_fit_fails_at_once(tmp_path: Path) -> None:
    from payattn.config import get_preset, resolve_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model = asdict(resolve_config(get_preset("mnist-tiny"), "standard"))
    model.update(image_size=32, context_length=64, patch_size=4)
    (run_dir / "config.json").write_text(json.dumps({"task": "mnist-5k", "preset": "mnist-tiny",
                                                     "mechanism": "standard", "seed": 0, "epochs": 1,
                                                     "model": model}))
    (run_dir / "model.pt").write_bytes(b"")
    refuse(["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "out")],
           str(run_dir / "config.json"), "image_size 32 (the mnist-5k images have 28)", "payattn train")


def test_verify_names_the_file_it_cannot_load_and_the_fix(tflite: Path, tmp_path: Path) -> None:
    """A model file that passes its sha256 (the manifest was restamped) but no runtime loads:
    a real `payattn verify`, whose device runs in a child process."""
    directory = tflite.parent
    onnx = directory / "model.onnx"
    onnx.write_bytes(b"\x08\x07" + os.urandom(64))
    manifest = json.loads((directory / "manifest.json").read_text())
    entry = next(e for e in manifest["artifacts"] if e["file"] == "model.onnx")
    entry.update(bytes=onnx.stat().st_size, sha256=hashlib.sha256(onnx.read_bytes()).hexdigest())
    manifest["reference"] = {"random_inputs": 0, "test_samples": 1, "layout": "PyTorch",
                             **{k: {"file": f"reference_{k}.npy", "shape": [1], "dtype": "float32", "bytes": 1,
                                    "sha256": "0" * 64} for k in ("inputs", "outputs")}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    import numpy as np

    for key, shape in (("inputs", (1, 3, 4, 4)), ("outputs", (1, 5))):
        np.save(directory / f"reference_{key}.npy", np.zeros(shape, np.float32))
        manifest["reference"][key]["sha256"] = hashlib.sha256(
            (directory / f"reference_{key}.npy").read_bytes()).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run([sys.executable, "-c", "from payattn.cli import app; app()", "verify", str(directory),
                           "--runtime", "onnxruntime"], capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and f"cannot load {onnx}" in errors[0] and "re-export" in errors[0], proc.stderr
