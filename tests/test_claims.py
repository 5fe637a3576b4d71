"""Statistics over seeds, claim verdicts and the Pareto section of the report, on a sweep folder
written here with known accuracies and bench lines tied to it by sha256."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import pytest
from PIL import Image

from payattn.report import report
from payattn.report.claims import (INCONCLUSIVE, NOT_APPLICABLE, NOT_SUPPORTED, SUPPORTED, Estimate, SweepRun,
                                   accuracy_claims, speedup_verdict, t975)
from payattn.report.pareto import ParetoPoint, front
from payattn.sweep import PointResult, make_spec, run_dir_of, write_index
from test_report import line, table_rows, write_jsonl

STANDARD = [0.900, 0.912, 0.895, 0.921, 0.903]
# Offsets from standard per seed, in accuracy: the verdicts follow from these.
OFFSETS = {"standard": [0, 0, 0, 0, 0],
           "optimised": [-0.031, -0.029, -0.030, -0.032, -0.028],   # 3 points worse: does not match
           "efficient": [0.002, -0.001, 0.001, 0.000, 0.003],        # inside ±1 point: matches
           "super": [0.020, -0.015, 0.030, -0.010, 0.025]}           # noisy: inconclusive
P50 = {"standard": 0.20, "optimised": 0.18, "efficient": 0.12, "super": 0.15}


def test_t_quantiles_match_tables():
    for df, expected in ((1, 12.706205), (4, 2.776445), (30, 2.042272), (40, 2.021075),
                         (100, 1.983972), (1000, 1.962339)):
        assert t975(df) == pytest.approx(expected, abs=2e-4)


def test_estimate_is_mean_std_and_t_interval():
    values = [0.91, 0.93, 0.92, 0.95]
    est = Estimate.of(values)
    half = 3.182446 * statistics.stdev(values) / 2
    assert (est.mean, est.std, est.n) == (pytest.approx(0.9275), pytest.approx(statistics.stdev(values)), 4)
    assert (est.low, est.high) == (pytest.approx(0.9275 - half), pytest.approx(0.9275 + half))
    assert Estimate.of([0.9]).low is None


def runs_of(offsets: dict[str, list[float]]) -> list[SweepRun]:
    return [SweepRun(m, m, seed, (("preset", "mnist-tiny"),), STANDARD[seed] + off[seed], 16, 64, 1000)
            for m, off in offsets.items() for seed in range(5)]


def test_accuracy_verdicts_follow_the_paired_interval_and_margin():
    verdicts = {c.claim: c.verdict for c in accuracy_claims(runs_of(OFFSETS))}
    assert verdicts == {"optimised matches standard": NOT_SUPPORTED, "efficient matches standard": SUPPORTED,
                        "super beats standard": INCONCLUSIVE}
    better = {c.claim: c.verdict for c in accuracy_claims(runs_of({**OFFSETS, "super": [0.03, 0.025, 0.035, 0.03, 0.028]}))}
    assert better["super beats standard"] == SUPPORTED
    worse = {c.claim: c.verdict for c in accuracy_claims(runs_of({**OFFSETS, "super": [0.001, -0.002, 0.0, -0.001, 0.002]}))}
    assert worse["super beats standard"] == NOT_SUPPORTED  # rules out a gain of a point
    one_seed = [r for r in runs_of(OFFSETS) if r.seed == 0]
    assert {c.verdict for c in accuracy_claims(one_seed)} == {INCONCLUSIVE}


@pytest.mark.parametrize("ratios, verdict", [
    ([1.30, 1.31, 1.29], SUPPORTED), ([1.0, 1.01, 0.99], NOT_SUPPORTED), ([1.6, 0.8], INCONCLUSIVE),
    ([1.2], SUPPORTED), ([1.02], NOT_SUPPORTED),
])
def test_speedup_verdicts(ratios, verdict):
    assert speedup_verdict(ratios)[0] == verdict


def test_front_keeps_points_nothing_beats_on_both_axes():
    def point(name, ms, acc):
        return ParetoPoint(name, "standard", (), "litert", "fp32", 1, ms, Estimate.of([acc]), 1)
    a, b, c, d = point("a", 0.1, 0.90), point("b", 0.2, 0.95), point("c", 0.3, 0.94), point("d", 0.1, 0.89)
    assert front([a, b, c, d]) == [a, b]


def make_sweep(folder: Path) -> list[dict]:
    """A finished 4 × 5 sweep (run dirs with config and metrics), seed 0 exported, and bench lines
    for those artifacts on two devices."""
    spec = make_spec("mnist-5k", list(OFFSETS), list(range(5)), epochs=1)
    results = {}
    for point in spec.points():
        acc = STANDARD[point.seed] + OFFSETS[point.mechanism][point.seed]
        run_dir = run_dir_of(folder, point)
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({
            "task": "mnist-5k", "preset": "mnist-tiny", "mechanism": point.mechanism, "seed": point.seed,
            "epochs": 1, "model": {"context_length": 16, "d_model": 64}}))
        (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": acc, "params": 1000}))
        results[point.id] = PointResult(point, "done", {"test_accuracy": acc})
    write_index(folder, spec, spec.points(), results)
    lines = []
    for mech in OFFSETS:
        art = folder / "artifacts" / mech / "seed-0"
        art.mkdir(parents=True)
        entries = []
        for device in ("laptop", "pi5"):
            for runtime, fmt, file in (("onnxruntime", "onnx", "model.onnx"), ("litert", "tflite", "model_fp32.tflite")):
                scale = 1.0 if device == "laptop" else 8.0
                result = line(mech, device, runtime, fmt, "fp32", file, p50=P50[mech] * scale)
                result["artifact"]["sha256"] = hashlib.sha256(f"{mech}/{file}".encode()).hexdigest()
                if device == "pi5":
                    result["device"] = dict(result["device"], emulated="qemu-user:cortex-a72")
                lines.append(result)
                entries.append({"file": file, "sha256": result["artifact"]["sha256"]})
        (art / "manifest.json").write_text(json.dumps({"artifacts": entries}))
    # A line of an artifact that is not the sweep's is left out of the sweep section.
    lines.append(line("super", "laptop", "litert", "tflite", "fp32", "model_fp32.tflite", p50=0.01))
    return lines


def test_report_has_claims_and_a_pareto_per_device(tmp_path):
    folder = tmp_path / "sweep"
    results = write_jsonl(tmp_path / "results.jsonl", make_sweep(folder))
    paths = report(results, tmp_path / "report", sweeps=[folder])
    md = paths.md.read_text()
    header, rows = table_rows(md, "test accuracy over seeds")
    assert header[:6] == ["setting", "mechanism", "params", "seeds", "mean", "std (points)"]
    efficient = next(r for r in rows if r[1] == "efficient")
    assert efficient[4] == f"{statistics.fmean(STANDARD) + 0.001:.2%}" and efficient[7] == "+0.10"
    _, claims = table_rows(md, "the paper's claims on this task")
    verdicts = {(r[0], r[1].split(";")[-1].strip()): r[3] for r in claims}
    assert verdicts[("efficient matches standard", "preset mnist-tiny")] == SUPPORTED
    assert verdicts[("efficient is faster", "laptop · litert fp32 · 1 thread")] == SUPPORTED  # 0.20 / 0.12
    assert verdicts[("super is faster when ℓ ≤ d_m", "pi5 (emulated) · onnxruntime fp32 · 1 thread")] == SUPPORTED
    assert "±1 accuracy point" in md
    for device in ("laptop", "pi5 (emulated)"):
        assert f"On {device}, ship efficient with" in md  # fastest within a point of the most accurate
    assert "latencies are those of qemu-user:cortex-a72 on the machine that ran it" in md
    for device in ("laptop", "pi5"):
        png = [p for p in paths.plots if p.name == f"pareto-sweep-{device}.png"]
        assert png and Image.open(png[0]).size[0] > 500
    _, pareto = table_rows(md, "accuracy and latency on laptop")
    on_front = {(r[0], r[1]) for r in pareto if r[-1] == "yes"}
    assert ("efficient", "litert") in on_front and ("optimised", "litert") not in on_front
    assert len(pareto) == 8 and not any(r[4] == "0.0100" for r in pareto)  # the stray line is not the sweep's


def test_report_from_a_sweep_alone_has_no_latency(tmp_path):
    folder = tmp_path / "sweep"
    make_sweep(folder)
    paths = report(None, tmp_path / "report", sweeps=[folder])
    md = paths.md.read_text()
    assert "efficient matches standard" in md and "is faster" not in md
    assert "payattn export --sweep" in md


def test_super_latency_claim_needs_short_context(tmp_path):
    folder = tmp_path / "sweep"
    results = write_jsonl(tmp_path / "results.jsonl", make_sweep(folder))
    for config in folder.glob("runs/*/seed-*/config.json"):
        data = json.loads(config.read_text())
        data["model"]["context_length"] = 128
        config.write_text(json.dumps(data))
    md = report(results, tmp_path / "report", sweeps=[folder]).md.read_text()
    _, claims = table_rows(md, "the paper's claims on this task")
    assert {r[3] for r in claims if r[0] == "super is faster when ℓ ≤ d_m"} == {NOT_APPLICABLE}
