"""payattn.bench: host-side benchmarking of artifact dirs into an append-only results file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tiny_artifacts import copy_artifact_dirs

from payattn.bench import bench
from payattn.runtime import RuntimeJobError, validate_result
from payattn.runtime.results import RESULT_PREFIX
from payattn.runtime.settings import BenchSettings

FAST = {"runs": 3, "warmup_runs": 1, "min_seconds": 0, "warmup_seconds": 0}
QUICK = {"settings": BenchSettings(**FAST)}
# An earlier line of payattn's (it appends only to its own results files), never rewritten.
EXISTING = RESULT_PREFIX.decode() + ',"kept":"an earlier line is never rewritten"}\n'


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    return copy_artifact_dirs(tmp_path / "artifacts")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.jsonl"
    path.write_text(EXISTING)
    return path


def test_bench_appends_one_line_per_measurement(dirs, results):
    seen = []
    returned = bench(dirs.values(), settings=BenchSettings(threads=(1, 2), **FAST), results_path=results,
                     device_name="ci", on_result=seen.append)
    lines = results.read_text().splitlines()
    assert lines[0] + "\n" == EXISTING
    assert [json.loads(line) for line in lines[1:]] == returned == seen
    for line in lines[1:]:
        validate_result(line)
    combos = sorted((r["task"], r["runtime"]["name"], r["threads"]) for r in returned)
    assert combos == sorted((task, runtime, threads) for task in ("tiny-text", "tiny-vision")
                            for runtime in ("litert", "onnxruntime") for threads in (1, 2))
    assert {r["device"]["name"] for r in returned} == {"ci"} and all(r["runs"] == 3 for r in returned)
    assert all(r["artifact"]["path"] == str(dirs[r["task"][5:]] / r["artifact"]["file"]) for r in returned)


def test_bench_selects_by_runtime_and_without_a_results_file(dirs):
    returned = bench([dirs["text"]], runtimes=("litert",), **QUICK)
    chosen = [(r["artifact"]["file"], r["runtime"]["name"]) for r in returned]
    assert chosen == [("model_fp32.tflite", "litert")]


def test_bench_reports_missing_precision_and_bad_names(dirs, results):
    with pytest.raises(RuntimeJobError, match=r"has no artifact for runtime\(s\) onnxruntime, litert, executorch at "
                                              r"precision\(s\) int8; it has litert/fp32, onnxruntime/fp32"):
        bench([dirs["text"]], precisions=("int8",), results_path=results, **QUICK)
    with pytest.raises(RuntimeJobError, match=r"unknown precision\(s\) \['fp64'\]; valid precisions: fp32"):
        bench([dirs["text"]], precisions=("fp64",), **QUICK)
    with pytest.raises(RuntimeJobError, match="unknown runtime 'tensorrt'"):
        bench([dirs["text"]], runtimes=("tensorrt",), **QUICK)
    with pytest.raises(RuntimeJobError, match="no artifact dir given"):
        bench([], **QUICK)
    with pytest.raises(RuntimeJobError, match="is a directory"):
        bench([dirs["text"]], results_path=dirs["text"], **QUICK)
    assert results.read_text() == EXISTING


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:64])


def _corrupt_with_matching_manifest(path: Path) -> None:
    """Garbage whose size and sha256 the manifest records: only the runtime can tell."""
    import hashlib

    data = b"not a model " * 20
    path.write_bytes(data)
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["artifacts"]:
        if entry["file"] == path.name:
            entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest_path.write_text(json.dumps(manifest))


def _wrong_input_shape(path: Path) -> None:
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["artifacts"]:
        if entry["file"] == path.name:
            entry["inputs"][0]["shape"] = [1, 16]  # the model takes [1, 8]
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("file", ["model.onnx", "model_fp32.tflite"])
@pytest.mark.parametrize("damage,message", ids=["truncated", "corrupt", "mismatched-inputs"], argvalues=[
    (_truncate, r"{path} is 64 bytes with sha256 .* truncated or was changed; export the model again"),
    (_corrupt_with_matching_manifest, r"cannot load {path} with .*: re-export the artifact"),
    (_wrong_input_shape, r"{path}: input 'tokens' is int32\[1, 8\] in the model but int32\[1, 16\] in the "
                         r"manifest; re-export"),
])
def test_a_bad_artifact_fails_before_anything_is_appended(dirs, results, file, damage, message):
    path = dirs["text"] / file
    damage(path)
    with pytest.raises(RuntimeJobError, match=message.format(path=re.escape(str(path)))):
        bench([dirs["vision"], dirs["text"]], results_path=results, **QUICK)  # the vision dir is fine
    assert results.read_text() == EXISTING


def test_a_missing_dir_or_manifest_fails_before_anything_is_appended(dirs, results, tmp_path):
    with pytest.raises(RuntimeJobError, match=re.escape(f"{tmp_path / 'nope'} does not exist; export")):
        bench([dirs["vision"], tmp_path / "nope"], results_path=results, **QUICK)
    (dirs["text"] / "manifest.json").unlink()
    with pytest.raises(RuntimeJobError, match=re.escape(f"{dirs['text']} has no manifest.json, so it is")):
        bench([dirs["vision"], dirs["text"]], results_path=results, **QUICK)
    assert results.read_text() == EXISTING
