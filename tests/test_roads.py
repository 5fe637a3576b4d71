"""The export's roads: litert-torch and ExecuTorch beside onnx2tf, through the same gates, told
apart downstream.

One tiny model per kind is trained for one epoch and exported once by every road (fp32 and
fp16: reduced-int8 top-1 agreement on one-epoch models sits at the 98% bar, see
test_export.py; ExecuTorch makes no fp16 program and says why); the tests read that one export.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from payattn.cli import app as cli
from payattn.export import Manifest, export
from payattn.export.app import describe, read
from payattn.export.ops import read_operators
from payattn.runtime.formats import converter_of
from payattn.runtime.settings import BenchSettings
from payattn.train import train
from payattn.views import road_notes

PRECISIONS = ("fp32", "fp16")
TINY_TEXT = {"max_vocab": 500, "context_length": 8, "d_model": 16, "heads": 2, "mlp_dim": 16, "depth": 1}
KINDS = {"vision": ("mnist-5k", {}), "text": ("movie-reviews", TINY_TEXT)}
ROADS = ["onnx2tf", "litert-torch", "executorch"]
TFLITE_ROADS = ROADS[:2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("roads")
    for kind, (task, overrides) in KINDS.items():
        train(task, "efficient", root / "runs" / kind, epochs=1, overrides=dict(overrides))
    return {kind: root / "runs" / kind for kind in KINDS}


@pytest.fixture(scope="module")
def exports(runs: dict[str, Path]) -> dict[str, tuple[Path, Manifest]]:
    found = {}
    for kind, run in runs.items():
        out = run.parent.parent / "artifacts" / kind
        found[kind] = out, export(run, out, PRECISIONS, converters=ROADS)
    return found


def tflite_entries(manifest: Manifest, converter: str) -> list[dict]:
    return [a for a in manifest.artifacts if a["format"] == "tflite" and a["converter"] == converter]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_both_roads_write_their_files_and_name_their_converter(exports, kind: str) -> None:
    out, manifest = exports[kind]
    graphs = ("model", "model_app") if kind == "vision" else ("model",)
    names = {f"{g}{tag}_{p}.tflite" for g in graphs for tag in ("", "_litert-torch") for p in PRECISIONS}
    assert {p.name for p in out.glob("*.tflite")} == names
    assert {p.name for p in out.glob("*.pte")} == {"model_fp32.pte"}
    assert {a["file"]: a["converter"] for a in manifest.artifacts} == {
        "model.onnx": "torch.onnx", "model_fp32.pte": "executorch",
        **{n: "litert-torch" if "litert" in n else "onnx2tf" for n in names}}
    assert list(manifest["roads"]) == ROADS and all(r["seconds"] > 0 for r in manifest["roads"].values())
    assert "fp16" in manifest["roads"]["executorch"]["left_out"]  # with the reason, not silently


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_litert_torch_files_pass_the_same_gates(exports, kind: str) -> None:
    out, manifest = exports[kind]
    limits = manifest["verification"]["max_abs_diff"]
    onnx2tf = {(a["precision"], a["variant"]): a for a in tflite_entries(manifest, "onnx2tf")}
    for entry in tflite_entries(manifest, "litert-torch"):
        path = out / entry["file"]
        assert all(use.builtin for use in read_operators(path))
        assert entry["parity"]["max_abs_diff"] <= limits[entry["precision"]]
        twin = onnx2tf[entry["precision"], entry["variant"]]
        assert entry["signature"] == twin["signature"]  # args_0 / output_0 renamed
        assert entry["inputs"][0]["name"] == twin["inputs"][0]["name"]
        assert read(path).metadata is not None and entry["metadata"] == {**twin["metadata"]}
        assert entry["xnnpack"]["accelerator"] == "XNNPACK"
        assert isinstance(entry["gpu"]["compatible"], bool) and entry["gpu"] == describe(path)["gpu"]
    assert all("gpu" in a for a in tflite_entries(manifest, "onnx2tf"))


@pytest.mark.slow
def test_vision_app_form_takes_rgb_pixels_by_both_roads(exports) -> None:
    _, manifest = exports["vision"]
    app_forms = [a for a in manifest.artifacts if a.get("variant") == "app"]
    assert {a["converter"] for a in app_forms} == set(TFLITE_ROADS)  # the app form is a TFLite file's
    assert all(a["inputs"][0]["color_space"] == "RGB" and a["inputs"][0]["shape"][-1] in (3, 28)
               for a in app_forms)


@pytest.mark.slow
def test_bench_measures_both_roads_and_says_which(exports) -> None:
    from payattn.bench import bench

    out, _ = exports["vision"]
    settings = BenchSettings(runs=3, warmup_runs=1, min_seconds=0, warmup_seconds=0)
    lines = bench([out], runtimes=["litert"], precisions=["fp32"], settings=settings)
    assert sorted((r["artifact"]["file"], r["artifact"]["converter"]) for r in lines) == [
        ("model_fp32.tflite", "onnx2tf"), ("model_litert-torch_fp32.tflite", "litert-torch")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_executorch_programs_pass_the_gates_and_bench_on_executorch(exports, kind: str) -> None:
    from payattn.bench import bench

    out, manifest = exports[kind]
    (entry,) = [a for a in manifest.artifacts if a["format"] == "pte"]
    assert entry["parity"]["max_abs_diff"] <= manifest["verification"]["max_abs_diff"]["fp32"]
    assert entry["parity"]["top1_agreement"] == 1.0
    xnnpack = entry["xnnpack"]
    assert xnnpack["accelerator"] == "XNNPACK" and xnnpack["partitions"] >= 1
    if kind == "vision":  # token ids and the padding mask are integer work XNNPACK does not take
        assert xnnpack["fully_delegated"] and xnnpack["partitions"] == 1 and xnnpack["outside"] == {}
    assert entry["operator_counts"]["XnnpackBackend"] == xnnpack["partitions"]
    settings = BenchSettings(runs=3, warmup_runs=1, min_seconds=0, warmup_seconds=0)
    (line,) = bench([out], runtimes=["executorch"], precisions=["fp32"], settings=settings)
    assert (line["runtime"]["name"], line["artifact"]["converter"]) == ("executorch", "executorch")
    assert line["artifact"]["parity"]["max_abs_diff"] == entry["parity"]["max_abs_diff"]


@pytest.mark.slow
def test_a_failing_road_is_named_and_the_others_are_written(
    runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import litert_torch

    def broken(*args, **kwargs):
        raise RuntimeError("torch.export could not trace the model")

    monkeypatch.setattr(litert_torch, "convert", broken)
    out = tmp_path / "out"
    manifest = export(runs["text"], out, ["fp32"], converters=TFLITE_ROADS)
    assert {p.name for p in out.glob("*.tflite")} == {"model_fp32.tflite"}
    failed = manifest["roads"]["litert-torch"]["failed"]
    assert "with litert-torch" in failed and "RuntimeError: torch.export could not trace" in failed
    assert any("the litert-torch road failed" in note for note in road_notes([manifest]))
    assert Manifest.load(out).data == manifest.data


def test_one_road_without_tflite_exports_whole(runs: dict[str, Path], tmp_path: Path) -> None:
    """ExecuTorch alone: the .pte programs and model.onnx, and no USAGE.md (it is about .tflite)."""
    out = tmp_path / "out"
    manifest = export(runs["text"], out, ["fp32"], converters=["executorch"])
    assert {a["file"] for a in manifest.artifacts} == {"model.onnx", "model_fp32.pte"}
    assert not (out / "USAGE.md").exists() and Manifest.load(out).data == manifest.data


def test_unknown_converters_are_one_line_errors(tmp_path: Path) -> None:
    for name, message in (("nope", "unknown converter 'nope'; valid converters: onnx2tf, litert-torch, executorch"),):
        result = CliRunner().invoke(cli, ["export", "--converter", name, "--runs-dir", str(tmp_path / "runs"),
                                          "--out", str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) <= 2  # one line (wrapped at most once)
    assert not (tmp_path / "runs").exists()  # refused before any training


def test_old_manifests_name_their_one_converter() -> None:
    assert converter_of({"format": "onnx"}) == "torch.onnx"
    assert converter_of({"format": "tflite"}) == "onnx2tf"
    assert converter_of({"format": "tflite", "converter": "litert-torch"}) == "litert-torch"
