"""The ExecuTorch road: .pte lowering (fp32, int8), delegation, parity with PyTorch, and the
harness running .pte files with explicit threads through the same job path `payattn bench` uses.

Lowering takes tens of seconds per file, so each model kind is lowered once per module.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("executorch")

from payattn.bench import build_job  # noqa: E402
from payattn.config import resolve_config  # noqa: E402
from payattn.export import executorch_road as road  # noqa: E402
from payattn.export.onnx_graph import INPUT_NAMES, example_input  # noqa: E402
from payattn.models import build_model  # noqa: E402
from payattn.runtime import run_job  # noqa: E402
from payattn.runtime.noop import harness_ms, onnx_identity  # noqa: E402
from payattn.runtime.parity import executorch_call, run_each  # noqa: E402
from payattn.runtime.runners import executorch_method  # noqa: E402

# Max abs logit difference from PyTorch: fp32 computes the model's own maths in another
# summation order; int8 rounds weights and activations (ranges from 64 calibration inputs).
TOLERANCE = {"fp32": 1e-5, "int8": 0.1}
# What XNNPACK cannot take in a text model: the token lookup and the padding mask work on
# integer ids (XNNPACK runs float and quantised tensors only), and the mask's row minimum
# has no XNNPACK kernel (its max runs only on 4D tensors' inner dims), so the scores before it
# and the rest after it are two delegate segments.
TEXT_OUTSIDE = {"aten::embedding.out", "aten::eq.Scalar_out", "aten::amin.out", "dim_order_ops::_to_dim_order_copy.out"}


def _inputs(cfg, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if cfg.kind == "vision":
        return rng.standard_normal((n, cfg.channels, cfg.image_size, cfg.image_size)).astype(np.float32)
    ids = rng.integers(1, cfg.vocab_size, (n, cfg.context_length)).astype(np.int32)
    ids[: n // 2, cfg.context_length // 2:] = cfg.pad_id  # half the texts padded
    return ids


@pytest.fixture(scope="module", params=[("mnist-tiny", "efficient", 10), ("imdb-paper", "super", 2)],
                ids=["vision", "text"])
def lowered(request, tmp_path_factory):
    """One model per kind (untrained, seeded), lowered at fp32 and int8, with its test inputs."""
    preset, mechanism, classes = request.param
    cfg = resolve_config(preset, mechanism, num_classes=classes)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    out = tmp_path_factory.mktemp(f"pte-{cfg.kind}")
    paths = road.convert(model, example_input(cfg), out, ["fp32", "int8", "fp16"], _inputs(cfg, 64, 1))
    x = _inputs(cfg, 16, 2)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    return cfg, paths, x, reference


def test_only_fp32_and_int8_are_made_and_the_rest_say_why():
    assert road.left_out(["fp32", "fp16", "int8", "dynamic-int8"]) == {
        "fp16": road.NOT_MADE["fp16"], "dynamic-int8": road.NOT_MADE["dynamic-int8"]}


@pytest.mark.parametrize("preset", ["mnist-tiny", "mnist-wide"])
def test_layer_norm_means_are_linear_layers_at_small_width(preset):
    """At d_m = 64 every LayerNorm's two means are linear layers with a constant weight (one
    XNNPACK operator each), not means (four more: XNNPACK's NHWC reshapes and transposes around
    each), and the pooling's mean over tokens is the one mean left; at d_m = 256, where such a
    layer costs more than the five operators, they stay means."""
    from payattn.export.onnx_graph import Unbatched

    cfg = resolve_config(preset, "standard", num_classes=10)
    model = build_model(cfg).eval()
    norms = sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    program = torch.export.export(Unbatched(model).eval(), (example_input(cfg),))
    calls = [str(n.target) for n in program.run_decompositions(road.decompositions()).graph.nodes
             if n.op == "call_function"]
    assert norms == 2 * cfg.depth + 1 and "aten.native_layer_norm.default" not in calls
    assert calls.count("aten.mean.dim") == (1 if cfg.d_model <= 64 else 1 + 2 * norms)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_whole_graph_is_one_xnnpack_delegate(lowered, precision):
    cfg, paths, _, _ = lowered
    assert set(paths) == {"fp32", "int8"}
    found = road.delegation(paths[precision])
    assert found["accelerator"] == "XNNPACK"
    if cfg.kind == "vision":
        assert found["fully_delegated"] and found["partitions"] == 1 and found["outside"] == {}
    else:
        assert found["partitions"] <= 1 + cfg.depth and set(found["outside"]) <= TEXT_OUTSIDE


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_parity_with_pytorch(lowered, precision):
    cfg, paths, x, reference = lowered
    spec_dtype = "float32" if cfg.kind == "vision" else "int32"
    logits = run_each(executorch_call(executorch_method(paths[precision], 1), spec_dtype), x)
    assert np.abs(logits - reference).max() <= TOLERANCE[precision]
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= (1.0 if precision == "fp32" else 0.8)


def _pte_dir(lowered) -> Path:
    """The lowered files' folder, with a manifest listing them, as the harness reads one."""
    cfg, paths, _, _ = lowered
    spec = {"name": INPUT_NAMES[cfg.kind], "shape": [1, *example_input(cfg).shape[1:]],
            "dtype": "float32" if cfg.kind == "vision" else "int32",
            "layout": "NCHW" if cfg.kind == "vision" else "tokens"}
    if cfg.kind == "text":
        spec |= {"low": 0, "high": cfg.vocab_size}
    _write_manifest(paths["fp32"].parent, cfg, [paths["fp32"], paths["int8"]], spec)
    return paths["fp32"].parent


def test_bench_job_runs_pte_with_explicit_threads(lowered, tmp_path):
    job = build_job([_pte_dir(lowered)], runtimes=["executorch"], precisions=["fp32", "int8"])
    job |= {"threads": [1, 2], "runs": 5, "warmup_runs": 1, "min_seconds": 0.0, "warmup_seconds": 0.0}
    lines = run_job(job)
    assert sorted((line["artifact"]["precision"], line["threads"]) for line in lines) == [
        ("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)]
    for line in lines:
        assert line["runtime"]["name"] == "executorch" and line["artifact"]["format"] == "pte"
        assert 0 < line["harness_ms"]["p50"] < line["latency_ms"]["p50"]


def test_a_device_without_executorch_still_runs_the_other_runtimes(lowered, monkeypatch):
    from tiny_artifacts import _built

    monkeypatch.setitem(__import__("sys").modules, "executorch.runtime", None)
    job = build_job([_built()[lowered[0].kind], _pte_dir(lowered)], runtimes=["onnxruntime", "executorch"])
    job |= {"runs": 3, "warmup_runs": 1, "min_seconds": 0.0, "warmup_seconds": 0.0}
    said = []
    lines = run_job(job, log=said.append)
    assert {line["runtime"]["name"] for line in lines} == {"onnxruntime"}
    assert any("pip install executorch==1.5.1" in message for message in said)


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert", "executorch"])
def test_harness_cost_is_measured_on_a_do_nothing_model(runtime):
    spec = [{"name": "token_ids", "shape": [1, 8], "dtype": "int32", "layout": "tokens", "low": 0, "high": 9}]
    cost = harness_ms(runtime, spec, 1)
    assert 0 < cost["p50"] < 1 and cost["mean"] > 0


def test_the_onnx_do_nothing_model_is_a_valid_onnx_file():
    import onnx

    spec = [{"name": "images", "shape": [1, 3, 4, 4], "dtype": "float32"}]
    model = onnx.load_from_string(onnx_identity(spec))
    onnx.checker.check_model(model)
    assert [node.op_type for node in model.graph.node] == ["Identity"]


def _write_manifest(directory: Path, cfg, files: list[Path], spec: dict) -> None:
    """A payattn.manifest/1 document listing the .pte files (the export writes the real one)."""
    artifacts = []
    for path in files:
        data = path.read_bytes()
        artifacts.append({
            "file": path.name, "format": "pte", "precision": path.stem.rsplit("_", 1)[1], "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "operators": [], "operator_count": 0,
            "operator_counts": {}, "inputs": [spec],
            "outputs": [{"name": "logits", "shape": [1, cfg.num_classes], "dtype": "float32"}],
            "parity": {"max_abs_diff": 0.0, "top1_agreement": 1.0, "samples": 1}, "test_accuracy": None})
    manifest = {"schema": "payattn.manifest/1", "payattn_version": "0.1.0", "created": "2025-01-01T00:00:00Z",
                "mechanism": cfg.mechanism, "task": "tiny", "preset": "tiny", "kind": cfg.kind, "config": {},
                "params": 1, "attention_params": 0, "flops": 1, "attention_flops": 0,
                "labels": [str(i) for i in range(cfg.num_classes)], "preprocessing": {}, "artifacts": artifacts,
                "verification": {"random_inputs": 1, "test_samples": 0, "test_split_size": 0,
                                 "pytorch_test_accuracy": None, "logit_scale": 1.0, "max_abs_diff": {},
                                 "min_top1_agreement": {}, "calibration_samples": 0},
                "versions": {}, "export_seconds": 0.0}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
