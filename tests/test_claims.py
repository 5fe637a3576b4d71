"""Statistics over seeds, claim verdicts and the Pareto section of the report, on a sweep folder
written here with known accuracies and bench lines tied to it by sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
from pathlib import Path

import pytest
from PIL import Image

from payattn.errors import PayattnError
from payattn.report import report
from payattn.report.claims import (INCONCLUSIVE, NOT_APPLICABLE, NOT_SUPPORTED, SUPPORTED, Estimate, SweepRun,
                                   accuracy_claims, load_sweep, speedup_verdict, t975, to_settle)
from payattn.report.paper import (CONSISTENT, INCONCLUSIVE as PAPER_INCONCLUSIVE, NOT_CONSISTENT, NOT_MEASURED,
                                  PAPER_CLAIMS, paper_table)
from payattn.report.pareto import Benched, ParetoPoint, front
from payattn.report.power import seeds_needed, t_cdf, t_quantile
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


def test_t_cdf_and_quantiles_match_closed_forms_and_tables():
    for t in (-3.0, -0.4, 0.0, 0.7, 5.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    # Published t tables (and scipy.stats.t.ppf): t(0.80; 1, 9, 30), t(0.995; 10), t(0.975; 250).
    for p, df, expected in ((0.8, 1, 1.376382), (0.8, 9, 0.883404), (0.8, 30, 0.853767),
                            (0.995, 10, 3.169273), (0.975, 250, 1.969498), (0.2, 9, -0.883404)):
        assert t_quantile(p, df) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("spread, expected", [(1.0, 10), (2.0, 34), (5.0, 199), (0.5, 5)])
def test_seeds_needed_matches_the_published_one_sample_t_table(spread, expected):
    # Paired (one-sample) two-sided t-test, α = 0.05, power 0.8, effect size d = margin / spread:
    # d = 1 → 10, d = 0.5 → 34, d = 0.2 → 199, d = 2 → 5 (Cohen's tables; scipy's noncentral t
    # gives the same n, e.g. power 0.803 at n = 10 and 0.748 at n = 9 for d = 1).
    assert seeds_needed(spread / 100, 0.01) == expected


def test_seeds_needed_is_capped_and_refuses_no_spread():
    assert seeds_needed(0.5, 0.01) is None  # d = 0.02 would need about 19,600 seeds
    with pytest.raises(ValueError):
        seeds_needed(0.0, 0.01)


def test_seeds_to_settle_per_verdict():
    settled = Estimate.of([0.001, 0.002, 0.0, 0.001])
    assert to_settle(SUPPORTED, settled, 0.01) == "settled at 4 seeds"
    assert to_settle(NOT_APPLICABLE, settled, 0.01) == "—"
    assert to_settle(INCONCLUSIVE, Estimate.of([0.02]), 0.01) == "spread unknown: needs ≥ 2 seeds"
    assert to_settle(INCONCLUSIVE, Estimate.of([0.01, 0.01]), 0.01) == "spread unknown: needs ≥ 2 seeds that differ"
    # The noisy super offsets: std 2.09 points of the paired difference → 37 seeds (scipy's
    # noncentral t: power 0.808 at 37, 0.796 at 36).
    noisy = Estimate.of(OFFSETS["super"])
    assert to_settle(INCONCLUSIVE, noisy, 0.01) == "37 seeds (32 more)"
    assert to_settle(INCONCLUSIVE, Estimate.of([0.6, -0.6]), 0.01) == "> 10,000 seeds"


def test_claims_carry_seeds_to_settle():
    settle = {c.claim: c.settle for c in accuracy_claims(runs_of(OFFSETS))}
    assert settle == {"optimised matches standard": "settled at 5 seeds",
                      "efficient matches standard": "settled at 5 seeds",
                      "super beats standard": "37 seeds (32 more)"}
    one_seed = [r for r in runs_of(OFFSETS) if r.seed == 0]
    assert {c.settle for c in accuracy_claims(one_seed)} == {"spread unknown: needs ≥ 2 seeds"}
    assert speedup_verdict([1.2])[2] == "settled at 1 benched seed"
    # Speed-ups 1.6× and 0.8×: std of the logs 0.490 against log(1.05) = 0.0488 → d = 0.0995.
    assert speedup_verdict([1.6, 0.8])[2] == "795 benched seeds (793 more)"


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
    settle = {r[0]: r[4] for r in claims if r[1] == "preset mnist-tiny"}
    assert settle["super beats standard"] == "37 seeds (32 more)"
    assert settle["efficient matches standard"] == "settled at 5 seeds"
    assert "paired t-test sample size" in md
    _, paper = table_rows(md, "the paper's claims by version")
    by_figure = {r[3]: r for r in paper}
    assert set(by_figure) == {c.figure for c in PAPER_CLAIMS}
    # 0.20 / 0.12 ms (efficient) and 0.20 / 0.15 ms (super) on 2 devices × 2 runtimes.
    assert by_figure["up to 2×"][5:7] == ["1.67× on each of 4 bench configurations", CONSISTENT]
    assert by_figure["faster"][5:7] == ["1.33× on each of 4 bench configurations", CONSISTENT]
    assert by_figure["25% smaller"][5].startswith("attention layers 0.52×")
    assert by_figure["36.50% → 46.29% top-1"][6] == NOT_MEASURED
    page = paths.html.read_text()
    assert "the paper&#x27;s claims by version" in page and "seeds to settle" in page
    assert "1.67× on each of 4 bench configurations" in page and "37 seeds (32 more)" in page
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
    _, claims = table_rows(md, "the paper's claims on this task")
    assert "efficient matches standard" in md and not any("is faster" in r[0] for r in claims)
    assert "payattn export --sweep" in md
    _, paper = table_rows(md, "the paper's claims by version")
    speed = [r for r in paper if r[2] == "speed-up over standard"]
    assert len(speed) == 2 and {r[6] for r in speed} == {NOT_MEASURED}
    assert all(f"`payattn export --sweep {folder} --seeds 1`" in r[5] for r in speed)


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


def paper_rows(runs: list[SweepRun], lines: list[Benched] = (), task: str = "mnist-5k") -> dict[str, list]:
    """The paper-claims table on `runs`, by version and figure."""
    table = paper_table(Path("sweeps/x"), {"task": task}, runs, list(lines), {})
    return {f"{r[0]} {r[3]}": r for r in table.rows}


def test_paper_claims_are_the_papers_figures():
    assert [(c.version, c.metric, c.figure) for c in PAPER_CLAIMS] == [
        ("v1", "speed-up over standard", "up to 2×"), ("v2", "accuracy gain over standard", "up to 17%"),
        ("v2", "attention parameters vs standard", "25% fewer"), ("v3", "accuracy gain over standard", "up to 10%"),
        ("v3", "speed-up over standard", "faster"), ("v3", "attention parameters vs standard", "25% smaller"),
        ("CCT follow-up", "CIFAR-100 top-1, standard → super (CCT)", "36.50% → 46.29% top-1")]


def test_paper_claims_beside_the_sweeps_accuracy_and_parameters():
    runs = [dataclasses.replace(r, params=900) if r.mechanism == "super" else r for r in runs_of(OFFSETS)]
    rows = paper_rows(runs)
    gain = rows["v2 up to 17%"]
    assert gain[4] == "preset mnist-tiny" and gain[6] == PAPER_INCONCLUSIVE
    # Super − standard: +1.00 point on a standard mean of 90.62%, i.e. +1.1% of it.
    assert gain[5].startswith("+1.00 points (+1.1% of standard's 90.62%), 95% CI [-1.60, +3.60] points")
    # One attention layer with biases at ℓ = 16, d_m = 64: super 2·64² + 2·64 + 16² = 8,576,
    # standard 4·64² + 4·64 = 16,640 → 0.52×, 48% fewer; whole models 900 / 1,000.
    params = rows["v2 25% fewer"]
    assert params[5] == "attention layers 0.52× (48% fewer); whole model 0.90× (900 vs 1,000)"
    assert params[6] == CONSISTENT and rows["v3 25% smaller"][6] == CONSISTENT
    for key in ("v1 up to 2×", "v3 faster", "CCT follow-up 36.50% → 46.29% top-1"):
        assert rows[key][6] == NOT_MEASURED and rows[key][5].startswith("not measured by this sweep: `payattn ")
    assert "--task cifar100" in rows["CCT follow-up 36.50% → 46.29% top-1"][5]


def test_paper_claims_consistent_or_not_by_the_interval_and_shape():
    better = paper_rows(runs_of({**OFFSETS, "super": [0.03, 0.025, 0.035, 0.03, 0.028]}))
    assert better["v3 up to 10%"][6] == CONSISTENT
    worse = paper_rows(runs_of({**OFFSETS, "super": [-0.03, -0.025, -0.035, -0.03, -0.028]}))
    assert worse["v3 up to 10%"][6] == NOT_CONSISTENT
    one_seed = paper_rows([r for r in runs_of(OFFSETS) if r.seed == 0])
    assert one_seed["v2 up to 17%"][6:] == [PAPER_INCONCLUSIVE, "one seed: no interval"]
    # ℓ = 128 > d_m = 64: super 2·64² + 2·64 + 128² = 24,704 against 16,640 → 1.48×.
    long = paper_rows([dataclasses.replace(r, context_length=128) for r in runs_of(OFFSETS)])
    assert long["v2 25% fewer"][5].startswith("attention layers 1.48×") and long["v2 25% fewer"][6] == NOT_CONSISTENT
    cifar = paper_rows(runs_of(OFFSETS), task="cifar100")["CCT follow-up 36.50% → 46.29% top-1"]
    assert cifar[5].startswith("a ViT, not a CCT: 90.62% → 91.62%; +1.00 points") and cifar[6] == PAPER_INCONCLUSIVE


def bench_lines(ms: dict[str, list[float]], configs: int = 1) -> list[Benched]:
    """Bench lines for seeds 0.. of each mechanism on `configs` runtimes."""
    return [Benched(m, m, (("preset", "mnist-tiny"),), seed, "laptop", f"runtime{k}", "fp32", 1, value)
            for m, values in ms.items() for seed, value in enumerate(values) for k in range(configs)]


def test_paper_speed_claims_from_bench_lines():
    runs = runs_of(OFFSETS)
    fast = paper_rows(runs, bench_lines({"standard": [0.2, 0.21], "efficient": [0.1, 0.105]}, configs=2))
    assert fast["v1 up to 2×"][5:7] == ["2.00× on each of 2 bench configurations", CONSISTENT]
    assert fast["v3 faster"][6] == NOT_MEASURED  # no super benched
    same = paper_rows(runs, bench_lines({"standard": [0.2, 0.21], "super": [0.2, 0.21]}))
    assert same["v3 faster"][5:7] == ["1.00× on laptop · runtime0 fp32 · 1 thread", NOT_CONSISTENT]
    mixed = bench_lines({"standard": [0.2], "super": [0.1]}) + [
        Benched("super", "super", (("preset", "mnist-tiny"),), 0, "laptop", "other", "fp32", 1, 0.2),
        Benched("standard", "standard", (("preset", "mnist-tiny"),), 0, "laptop", "other", "fp32", 1, 0.2)]
    assert paper_rows(runs, mixed)["v3 faster"][5:] == [
        "1.00×–2.00× over 2 bench configurations", PAPER_INCONCLUSIVE, "faster on 1 of 2 configurations"]


def test_a_run_whose_bias_is_not_a_boolean_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "sweep"
    make_sweep(folder)
    config = next(folder.glob("runs/super/seed-0/config.json"))
    data = json.loads(config.read_text())
    data["model"]["bias"] = "yes"
    config.write_text(json.dumps(data))
    with pytest.raises(PayattnError, match=r"config.json has a model.bias that is not true or false; .*--force"):
        load_sweep(folder)
