"""The stages of train() and export(), each called alone on a tiny text run.

One small model is trained and converted once (fp32 only, no app form); each export test
starts from that converted state, so a stage is checked without the ones after it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema

from payattn.cost import model_cost
from payattn.data import Prepared, load_task, prepare
from payattn.errors import PayattnError
from payattn.export import verify
from payattn.export.main import ExportState, Verified, check_operators, convert, keep_or_stop, verify_artifacts
from payattn.models import ModelConfig, build_model
from payattn.train import evaluate, fit, load_run, resolve, train

TINY_TEXT = {"max_vocab": 500, "context_length": 8, "d_model": 16, "heads": 2, "mlp_dim": 16, "depth": 1}
TFLITE_BUILTINS = {name for name in vars(schema.BuiltinOperator) if not name.startswith("_")} - {"CUSTOM"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportState, list[str]]:
    """A tiny movie-reviews run after the convert stage, and the steps it announced."""
    root = tmp_path_factory.mktemp("stages")
    train("movie-reviews", "efficient", root / "run", epochs=1, overrides=dict(TINY_TEXT))
    run = load_run(root / "run")
    dataset = load_task("movie-reviews")
    (root / "tmp").mkdir()
    state = ExportState(run, dataset, prepare(dataset, run.tokenizer), ["fp32"], root / "tmp")
    steps: list[str] = []
    convert(state, steps.append)
    return state, steps


def copy_of(state: ExportState, tmp: Path) -> ExportState:
    """The converted state with its own files, for a stage that changes them."""
    for path in state.tmp.iterdir():
        (tmp / path.name).write_bytes(path.read_bytes())
    files = {key: tmp / path.name for key, path in state.files.items()}
    return dataclasses.replace(state, tmp=tmp, files=files)


# ---- export ------------------------------------------------------------------------------


def test_convert_writes_the_onnx_file_and_one_tflite_per_precision(converted) -> None:
    state, steps = converted
    assert steps == ["exporting ONNX", "converting model.onnx to TFLite (fp32)"]
    assert list(state.variants) == ["model"]  # a text model has no app form
    assert state.files == {("model", "fp32"): state.tmp / "model_fp32.tflite"}
    assert sorted(p.name for p in state.tmp.iterdir()) == ["model.onnx", "model_fp32.tflite"]  # no work dirs
    assert state.calibration_samples == 0


def test_check_operators_counts_every_file(converted) -> None:
    state, _ = converted
    counts = check_operators(state.onnx, state.files.values())
    assert list(counts) == ["model.onnx", "model_fp32.tflite"]
    assert counts["model.onnx"]["Gelu"] == counts["model_fp32.tflite"]["GELU"] == 1  # depth 1: one MLP
    assert set(counts["model_fp32.tflite"]) <= TFLITE_BUILTINS
    assert all(n > 0 for c in counts.values() for n in c.values())


def test_check_operators_rejects_a_custom_operator_and_names_its_onnx_node(converted, tmp_path: Path) -> None:
    state, _ = converted
    model = schema.ModelT.InitFromPackedBuf(bytearray(state.files["model", "fp32"].read_bytes()), 0)
    gelu = next(c for c in model.operatorCodes if c.builtinCode == schema.BuiltinOperator.GELU)
    gelu.builtinCode = gelu.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    gelu.customCode = "Gelu"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    custom = tmp_path / "model_custom.tflite"
    custom.write_bytes(bytes(builder.Output()))
    with pytest.raises(PayattnError, match=r"model_custom\.tflite contains non-builtin operators.*: "
                                           r"Gelu \(writes .*; from ONNX node \S*Gelu"):
        check_operators(state.onnx, [*state.files.values(), custom])


def test_verify_returns_figures_and_keep_or_stop_decides(
    converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = copy_of(converted[0], tmp_path)
    state.verified = verify_artifacts(state, lambda message: None)
    assert [c.file for c in state.verified.checks] == ["model.onnx", "model_fp32.tflite"]
    assert all(c.failures == [] and c.max_abs_diff <= 1e-4 for c in state.verified.checks)
    assert keep_or_stop(state) == {}

    monkeypatch.setitem(verify.MAX_ABS_DIFF, "fp32", 0.0)  # no export is that exact
    state.verified = verify_artifacts(state, lambda message: None)  # figures, not an error
    assert all(c.failures for c in state.verified.checks)
    with pytest.raises(verify.VerificationError, match=r"model\.onnx: max abs logit difference"):
        keep_or_stop(state)
    assert (tmp_path / "model_fp32.tflite").exists()  # an fp32 miss stops the export, drops nothing


def test_keep_or_stop_leaves_out_a_reduced_precision_with_its_files(converted, tmp_path: Path) -> None:
    state = copy_of(converted[0], tmp_path)
    fp16 = tmp_path / "model_fp16.tflite"
    fp16.write_bytes(b"stands in for an fp16 file")
    state.files["model", "fp16"] = fp16
    figures = dict(max_abs_diff=1e-5, top1_agreement=1.0, min_top1_agreement=None, samples=10,
                   test_samples=2, test_accuracy=0.5)
    checks = [verify.Check("model.onnx", "fp32", max_abs_diff_limit=1e-4, **figures),
              verify.Check("model_fp32.tflite", "fp32", max_abs_diff_limit=1e-4, **figures),
              verify.Check("model_fp16.tflite", "fp16", max_abs_diff_limit=1e-6, **figures)]
    state.verified = Verified(checks, {}, {}, np.zeros(0))
    dropped = keep_or_stop(state)
    assert list(dropped) == ["fp16"] and "exceeds the fp16 tolerance" in dropped["fp16"][0]
    assert [c.file for c in state.verified.checks] == ["model.onnx", "model_fp32.tflite"]
    assert list(state.files) == [("model", "fp32")] and not fp16.exists()


# ---- train -------------------------------------------------------------------------------


def test_resolve_fits_the_tokenizer_first_and_leaves_the_overrides_alone() -> None:
    overrides = dict(TINY_TEXT)
    setup = resolve("movie-reviews", "imdb-paper", "efficient", load_task("movie-reviews"), overrides)
    assert overrides == TINY_TEXT
    assert setup.cfg.context_length == setup.tokenizer.max_length == 8
    assert setup.cfg.vocab_size == setup.tokenizer.vocab_size <= 500
    assert (setup.cfg.d_model, setup.cfg.num_classes, setup.cfg.mechanism) == (16, 2, "efficient")
    assert setup.data.train_x.shape[1:] == (8,) and setup.data.train_x.dtype.name == "int32"
    vision = resolve("mnist-5k", "mnist-tiny", "super", load_task("mnist-5k"), {"depth": 1})
    assert vision.tokenizer is None and vision.cfg.depth == 1
    assert vision.data.train_x.shape[1:] == (1, 28, 28) and vision.data.train_x.dtype.name == "float32"


def small_vision() -> tuple[ModelConfig, Prepared]:
    """A one-block mnist-tiny config, and a slice of its data small enough to fit in seconds."""
    setup = resolve("mnist-5k", "mnist-tiny", "standard", load_task("mnist-5k"), {"depth": 1})
    d = setup.data
    return setup.cfg, Prepared(d.train_x[:130], d.train_y[:130], d.test_x[:300], d.test_y[:300])


def test_fit_is_seeded_and_reports_every_step() -> None:
    cfg, data = small_vision()
    seen: list[tuple[int, int]] = []
    a = fit(cfg, data, epochs=2, seed=3, progress=lambda step, total, loss: seen.append((step, total)))
    assert seen == [(step, 6) for step in range(1, 7)]  # 130 samples: 3 batches an epoch
    b, c = fit(cfg, data, epochs=2, seed=3), fit(cfg, data, epochs=2, seed=4)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not all(torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in a.state_dict())


def test_evaluate_scores_both_splits_across_batches() -> None:
    cfg, data = small_vision()
    torch.manual_seed(0)
    model = build_model(cfg)
    metrics = evaluate(model, cfg, data)  # 300 test samples: two batches of at most 256
    with torch.no_grad():
        logits = model(torch.from_numpy(data.test_x))
    labels = torch.from_numpy(data.test_y)
    assert metrics["test_accuracy"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert metrics["test_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert 0 <= metrics["train_accuracy"] <= 1 and metrics["train_loss"] > 0
    assert metrics["params"] == sum(p.numel() for p in model.parameters())
    assert metrics["attention_params"] == model_cost(cfg).attention_params
