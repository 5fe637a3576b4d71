"""Accuracy over seeds and generated verdicts on the paper's claims, from a sweep folder.

Each claim is judged on this task at this number of seeds with a 95% Student-t interval of
the difference to standard, paired by seed (same seed, same data order and initial draw):

- "X matches standard": supported when the interval lies inside ±MARGIN_POINTS accuracy
  points, not supported when it lies wholly beyond the margin, inconclusive otherwise;
- "super beats standard": supported when the interval lies above 0, not supported when it
  rules out a gain of MARGIN_POINTS or more, inconclusive otherwise;
- "X is faster": from bench results of the sweep's models (see pareto.py), the speed-up
  (standard's p50 over the mechanism's) paired by seed: supported when its interval lies above
  1 and its estimate is at least 1 + LATENCY_MARGIN, not supported when the interval rules out
  a speed-up of 1 + LATENCY_MARGIN, inconclusive otherwise. With one benched seed there is no
  interval and the margin alone decides. "Super is faster" is judged only where ℓ ≤ d_m.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from payattn.errors import PayattnError
from payattn.mechanisms import MECHANISMS
from payattn.report.power import METHOD, MAX_SEEDS, seeds_needed, t_quantile
from payattn.report.tables import DASH, Table, ordered
from payattn.runtime.readers import read_json
from payattn.sweep_index import read_index

MARGIN_POINTS = 1.0  # accuracy points: a difference inside ±1 point counts as "matches"
LATENCY_MARGIN = 0.05  # a speed-up under 5% does not count as "faster"
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_APPLICABLE = "supported", "not supported", "inconclusive", "not applicable"


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (df ≥ 1)."""
    if df < 1:
        raise ValueError("a t interval needs at least one degree of freedom")
    return t_quantile(0.975, df)


@dataclass(frozen=True)
class Estimate:
    """Mean, sample std and 95% t interval of some values (no interval for a single value)."""

    mean: float
    std: float | None
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Estimate":
        n = len(values)
        mean = statistics.fmean(values)
        if n < 2:
            return cls(mean, None, None, None, n)
        std = statistics.stdev(values)
        half = t975(n - 1) * std / math.sqrt(n)
        return cls(mean, std, mean - half, mean + half, n)

    def interval(self, scale: float = 1.0, digits: int = 2, signed: bool = True) -> str:
        if self.low is None or self.high is None:
            return DASH
        sign = "+" if signed else ""
        return f"[{self.low * scale:{sign}.{digits}f}, {self.high * scale:{sign}.{digits}f}]"


@dataclass(frozen=True)
class SweepRun:
    """One finished point of a sweep, as the report needs it."""

    variant: str
    mechanism: str
    seed: int
    setting: tuple[tuple[str, Any], ...]  # preset and shape options, for grouping
    test_accuracy: float
    context_length: int
    d_model: int
    params: int
    bias: bool = True  # biases in the attention projections, for their parameter count


@dataclass(frozen=True)
class Claim:
    claim: str
    setting: str
    figures: str
    verdict: str
    settle: str  # seeds it took, or how many would settle it (power.METHOD)


def load_sweep(folder: Path) -> tuple[dict[str, Any], list[SweepRun]]:
    """The sweep index of `folder` and its finished points, read from their run dirs."""
    folder = Path(folder)
    index = read_index(folder)
    runs = []
    for entry in index["points"]:
        run_dir = folder / entry["run_dir"]
        if entry["status"] != "done":
            continue
        fix = (f"it is listed as done in {folder / 'sweep.json'}: run the same `payattn sweep` with "
               "--force to retrain it")
        config = read_json(run_dir / "config.json", "run config", fix)
        metrics = read_json(run_dir / "metrics.json", "run metrics", fix)
        model = config.get("model") if isinstance(config.get("model"), dict) else {}
        figures = {"test_accuracy": metrics.get("test_accuracy"), "params": metrics.get("params"),
                   "context_length": model.get("context_length"), "d_model": model.get("d_model")}
        bad = [k for k, v in figures.items() if isinstance(v, bool) or not isinstance(v, (int, float))
               or not math.isfinite(v)]
        if bad:
            raise PayattnError(f"{run_dir}: its config.json or metrics.json has no numeric {', '.join(bad)}; {fix}")
        bias = model.get("bias", True)
        if not isinstance(bias, bool):
            raise PayattnError(f"{run_dir}: its config.json has a model.bias that is not true or false; {fix}")
        runs.append(SweepRun(entry["variant"], entry["mechanism"], entry["seed"],
                             tuple(sorted(entry["setting"].items())), figures["test_accuracy"],
                             figures["context_length"], figures["d_model"], figures["params"], bias))
    if not runs:
        raise PayattnError(f"{folder} has no finished sweep point yet; run `payattn sweep` first")
    return index, runs


def setting_label(setting: Iterable[tuple[str, Any]]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in setting)


def settings(runs: list[SweepRun]) -> list[tuple[tuple[str, Any], ...]]:
    return list(dict.fromkeys(r.setting for r in runs))


def accuracies(runs: list[SweepRun], setting: tuple, mechanism: str) -> dict[int, float]:
    """Test accuracy by seed of one mechanism at one setting."""
    return {r.seed: r.test_accuracy for r in runs if r.setting == setting and r.mechanism == mechanism}


def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a − b over the seeds both have."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def accuracy_table(runs: list[SweepRun]) -> Table:
    """Per setting × mechanism: seeds, mean, std and 95% CI of test accuracy, Δ to standard paired by seed."""
    rows = []
    for setting in settings(runs):
        base = accuracies(runs, setting, "standard")
        for mech in ordered((r.mechanism for r in runs if r.setting == setting), MECHANISMS):
            acc = accuracies(runs, setting, mech)
            est = Estimate.of(list(acc.values()))
            diff = paired(acc, base)
            delta = Estimate.of(diff) if diff and mech != "standard" else None
            params = next(r.params for r in runs if r.setting == setting and r.mechanism == mech)
            rows.append([setting_label(setting), mech, f"{params:,}", str(est.n), f"{est.mean:.2%}",
                         DASH if est.std is None else f"{est.std * 100:.2f}",
                         est.interval(100, signed=False),
                         DASH if delta is None else f"{delta.mean * 100:+.2f}",
                         DASH if delta is None else delta.interval(100), DASH if delta is None else str(delta.n)])
    return Table(
        title="test accuracy over seeds",
        columns=["setting", "mechanism", "params", "seeds", "mean", "std (points)", "95% CI (%)",
                 "Δ vs standard (points)", "Δ 95% CI", "pairs"],
        rows=rows, left={0, 1},
        note=("Mean and sample std of the PyTorch model's test accuracy over seeds; the 95% interval is "
              "Student's t. Δ is the mechanism minus standard on the same seed (same data order and "
              "initial draw), averaged over the seeds both finished, with its own t interval."),
    )


def _match_verdict(d: Estimate, margin: float) -> str:
    if d.low is None or d.high is None:
        return INCONCLUSIVE
    if -margin < d.low and d.high < margin:
        return SUPPORTED
    if d.low >= margin or d.high <= -margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def _beats_verdict(d: Estimate, margin: float) -> str:
    if d.low is None or d.high is None:
        return INCONCLUSIVE
    if d.low > 0:
        return SUPPORTED
    if d.high < margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def accuracy_claims(runs: list[SweepRun], margin_points: float = MARGIN_POINTS) -> list[Claim]:
    """The paper's accuracy claims per setting, each with its figures and verdict."""
    margin = margin_points / 100
    claims = []
    for setting in settings(runs):
        base = accuracies(runs, setting, "standard")
        for mech, claim, judge in (("optimised", "optimised matches standard", _match_verdict),
                                   ("efficient", "efficient matches standard", _match_verdict),
                                   ("super", "super beats standard", _beats_verdict)):
            diff = paired(accuracies(runs, setting, mech), base)
            if not diff:
                continue
            d = Estimate.of(diff)
            figures = (f"Δ {d.mean * 100:+.2f} points, 95% CI {d.interval(100)}, {d.n} seed pair"
                       f"{'s' if d.n != 1 else ''}" + ("" if d.n > 1 else " (one seed: no interval)"))
            verdict = judge(d, margin)
            claims.append(Claim(claim, setting_label(setting), figures, verdict, to_settle(verdict, d, margin)))
    return claims


def to_settle(verdict: str, d: Estimate, margin: float, seeds: str = "seeds") -> str:
    """The seeds a settled claim took, or how many the power calculation (power.METHOD) says
    would settle an inconclusive one at `margin`, from the observed spread `d.std`."""
    if verdict == NOT_APPLICABLE:
        return DASH
    if verdict in (SUPPORTED, NOT_SUPPORTED):
        return f"settled at {d.n} {seeds if d.n != 1 else seeds.replace('seeds', 'seed')}"
    if d.std is None:
        return f"spread unknown: needs ≥ 2 {seeds}"
    if d.std == 0:
        return f"spread unknown: needs ≥ 2 {seeds} that differ"
    n = seeds_needed(d.std, margin)
    if n is None:
        return f"> {MAX_SEEDS:,} {seeds}"
    if n > d.n:
        return f"{n} {seeds} ({n - d.n} more)"
    return f"{n} {seeds}, has {d.n}: its estimate lies near a bound of the margin"


def speedup_verdict(ratios: Sequence[float], margin: float = LATENCY_MARGIN) -> tuple[str, str, str]:
    """Verdict, figures and seeds to settle for "is faster" from speed-ups paired by seed
    (geometric mean, t interval on logs; the power calculation on the logs, margin log(1 + margin))."""
    logs = Estimate.of([math.log(r) for r in ratios])
    est = math.exp(logs.mean)
    low = math.exp(logs.low) if logs.low is not None else est
    high = math.exp(logs.high) if logs.high is not None else est
    figures = f"speed-up {est:.2f}×" + (f", 95% CI [{low:.2f}×, {high:.2f}×], {logs.n} seeds"
                                       if logs.n > 1 else " (one benched seed: no interval)")
    verdict = INCONCLUSIVE
    if low > 1 and est >= 1 + margin:
        verdict = SUPPORTED
    elif high < 1 + margin:
        verdict = NOT_SUPPORTED
    return verdict, figures, to_settle(verdict, logs, math.log(1 + margin), "benched seeds")


def claims_table(claims: list[Claim], margin_points: float = MARGIN_POINTS) -> Table:
    return Table(
        title="the paper's claims on this task",
        columns=["claim", "setting", "figures", "verdict", "seeds to settle"],
        rows=[[c.claim, c.setting, c.figures, c.verdict, c.settle] for c in claims], left={0, 1, 2, 3, 4},
        note=(f"Generated from the sweep. Equivalence margin for \"matches\": ±{margin_points:g} accuracy "
              "point. \"Matches\" is supported when the 95% interval of the paired difference lies inside "
              "the margin and not supported when it lies wholly outside; \"beats\" is supported when the "
              "interval lies above 0 and not supported when it rules out a gain of the margin or more. "
              f"\"Is faster\" needs a speed-up of at least {LATENCY_MARGIN:.0%} with its interval above "
              "1×, and is not supported when the interval rules that out. Anything else is inconclusive "
              "at this number of seeds: more seeds narrow the interval. Seeds to settle: how many seeds "
              f"it took, or, for an inconclusive claim, {METHOD} (δ = {margin_points:g} point for "
              f"accuracy, log(1 + {LATENCY_MARGIN:g}) on the logs of the speed-ups), capped at "
              f"{MAX_SEEDS:,}; with one seed the spread is unknown."),
    )
