"""Accuracy against latency for a sweep's models: latency claims, the Pareto front per device.

Bench result lines are tied to sweep points by the sha256 of the artifact they measured,
which `payattn export --sweep` records in FOLDER/artifacts/VARIANT/seed-N/manifest.json, so
lines from any device (local, SSH, ADB) match without relying on paths. Accuracy is the
PyTorch models' mean over all seeds of the sweep with its 95% interval; latency is the median
over the benched seeds of each line's p50 (the mean where a tool prints no median).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from payattn.mechanisms import MECHANISMS
from payattn.report.claims import (MARGIN_POINTS, NOT_APPLICABLE, Claim, Estimate, SweepRun, accuracies,
                                   setting_label, settings, speedup_verdict)
from payattn.report.plots import save_png
from payattn.runtime.readers import read_json
from payattn.report.results import RUNTIMES, Result
from payattn.runtime.formats import FIRST_CONVERTER
from payattn.report.tables import DASH, Table, device_label, fmt_ms, ordered, typical_ms

MARKERS = {"fp32": "o", "fp16": "s", "dynamic-int8": "^", "int8": "D"}


@dataclass(frozen=True)
class Benched:
    """One bench line of one sweep point."""

    variant: str
    mechanism: str
    setting: tuple
    seed: int
    device: str
    runtime: str
    precision: str
    threads: int
    ms: float

    @property
    def config(self) -> tuple[str, str, str, int]:
        return self.device, self.runtime, self.precision, self.threads


@dataclass(frozen=True)
class ParetoPoint:
    variant: str
    mechanism: str
    setting: tuple
    runtime: str
    precision: str
    threads: int
    ms: float
    accuracy: Estimate
    seeds_benched: int

    def label(self, detail: bool) -> str:
        return self.variant + (f" {self.precision}·{self.threads}t" if detail else "")


def sweep_artifacts(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 of every exported artifact of the sweep → (variant, seed)."""
    found = {}
    for manifest in sorted(Path(folder).glob("artifacts/*/seed-*/manifest.json")):
        seed = manifest.parent.name.removeprefix("seed-")
        if not seed.isdigit():
            continue  # not a folder export --sweep wrote
        seed = int(seed)
        document = read_json(manifest, "manifest", "export that point again with `payattn export --sweep`")
        entries = document.get("artifacts") if isinstance(document.get("artifacts"), list) else []
        for entry in entries:  # read tolerantly: only the sha256 ties a result to its point
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
                found[entry["sha256"]] = (manifest.parent.parent.name, seed)
    return found


def road_name(r: Result) -> str:
    """The runtime, or the whole road where the file came from another converter than its
    format's first (litert-torch → litert beside onnx2tf's files), so every road is a point."""
    return r.runtime if r.converter == FIRST_CONVERTER.get(r.file_format) else r.road


def benched(folder: Path, runs: list[SweepRun], results: list[Result]) -> list[Benched]:
    """The latest bench line per sweep artifact × device × runtime × threads."""
    by_sha = sweep_artifacts(folder)
    by_point = {(r.variant, r.seed): r for r in runs}
    latest: dict[tuple, Benched] = {}
    for r in sorted(results, key=lambda r: (r.when, r.line)):
        key = by_sha.get(r.data["artifact"]["sha256"])
        if key not in by_point:
            continue
        run = by_point[key]
        b = Benched(run.variant, run.mechanism, run.setting, run.seed, r.device, road_name(r), r.precision,
                    r.threads, typical_ms(r)[0])
        latest[(b.variant, b.seed, b.config)] = b
    return list(latest.values())


def speedups(lines: list[Benched], mechanism: str) -> dict[tuple[str, str, str, int], list[float]]:
    """Per bench configuration: standard's latency over `mechanism`'s, paired by seed (lines of one setting)."""
    found: dict[tuple[str, str, str, int], list[float]] = {}
    for config in dict.fromkeys(b.config for b in lines):
        at = {(b.mechanism, b.seed): b.ms for b in lines if b.config == config}
        ratios = [at[("standard", s)] / at[(m, s)] for (m, s) in at if m == mechanism and ("standard", s) in at]
        if ratios:
            found[config] = ratios
    return found


def config_label(config: tuple[str, str, str, int], emulated: dict[str, str]) -> str:
    device, runtime, precision, threads = config
    return f"{device_label(device, emulated)} · {runtime} {precision} · {threads} thread"


def latency_claims(runs: list[SweepRun], lines: list[Benched], emulated: dict[str, str] | None = None) -> list[Claim]:
    """"Efficient is faster" and "super is faster when ℓ ≤ d_m" per setting and measured configuration
    (`emulated`: device name → emulator, marked in the setting)."""
    claims = []
    for setting in settings(runs):
        here = [b for b in lines if b.setting == setting]
        run = next(r for r in runs if r.setting == setting)
        short = run.context_length <= run.d_model
        for config in dict.fromkeys(b.config for b in here):
            where = f"{setting_label(setting)}; {config_label(config, emulated or {})}"
            for mech, claim in (("efficient", "efficient is faster"), ("super", "super is faster when ℓ ≤ d_m")):
                ratios = speedups(here, mech).get(config)
                if not ratios:
                    continue
                if mech == "super" and not short:
                    claims.append(Claim(claim, where, f"ℓ = {run.context_length} > d_m = {run.d_model}",
                                        NOT_APPLICABLE, DASH))
                    continue
                verdict, figures, settle = speedup_verdict(ratios)
                claims.append(Claim(claim, where, figures, verdict, settle))
    return claims


def pareto_points(runs: list[SweepRun], lines: list[Benched], device: str) -> list[ParetoPoint]:
    """One point per variant × runtime × precision × threads measured on `device`."""
    points = []
    on_device = [b for b in lines if b.device == device]
    for variant, runtime, precision, threads in dict.fromkeys(
            (b.variant, b.runtime, b.precision, b.threads) for b in on_device):
        hits = [b for b in on_device if (b.variant, b.runtime, b.precision, b.threads) == (variant, runtime, precision, threads)]
        first = hits[0]
        acc = Estimate.of(list(accuracies(runs, first.setting, first.mechanism).values()))
        points.append(ParetoPoint(variant, first.mechanism, first.setting, runtime, precision, threads,
                                  statistics.median(b.ms for b in hits), acc, len(hits)))
    return points


def front(points: list[ParetoPoint]) -> list[ParetoPoint]:
    """The points no other point beats on both latency and mean accuracy, fastest first."""
    def dominated(p: ParetoPoint) -> bool:
        return any(q.ms <= p.ms and q.accuracy.mean >= p.accuracy.mean
                   and (q.ms < p.ms or q.accuracy.mean > p.accuracy.mean) for q in points)
    return sorted((p for p in points if not dominated(p)), key=lambda p: p.ms)


def recommendation(device: str, points: list[ParetoPoint], margin_points: float = MARGIN_POINTS) -> str:
    """One sentence: the fastest configuration within the margin of the most accurate one."""
    best = max(points, key=lambda p: (p.accuracy.mean, -p.ms))
    ship = min((p for p in points if p.accuracy.mean >= best.accuracy.mean - margin_points / 100),
               key=lambda p: (p.ms, -p.accuracy.mean))
    how = f"{ship.variant} with {ship.runtime} {ship.precision} ({ship.threads} thread{'s' if ship.threads > 1 else ''})"
    figures = f"{fmt_ms(ship.ms)} ms p50 and {ship.accuracy.mean:.2%} mean accuracy"
    if ship == best:
        return f"On {device}, ship {how}: {figures}, the most accurate configuration measured and the fastest within {margin_points:g} point of it."
    return (f"On {device}, ship {how}: {figures}, the fastest configuration within {margin_points:g} point of "
            f"the most accurate ({best.variant}, {best.runtime} {best.precision}: {best.accuracy.mean:.2%} at "
            f"{fmt_ms(best.ms)} ms).")


def pareto_table(device: str, points: list[ParetoPoint]) -> Table:
    on_front = front(points)
    rows = [[p.variant, p.runtime, p.precision, str(p.threads), fmt_ms(p.ms), str(p.seeds_benched),
             f"{p.accuracy.mean:.2%}", p.accuracy.interval(100, signed=False), "yes" if p in on_front else ""]
            for p in sorted(points, key=lambda p: p.ms)]
    return Table(title=f"accuracy and latency on {device}",
                 columns=["model", "runtime", "precision", "threads", "p50 ms", "seeds benched",
                          "mean accuracy", "95% CI (%)", "Pareto front"],
                 rows=rows, left={0, 1, 2},
                 note=("p50 is the median over the benched seeds of each measurement's p50; accuracy is the "
                       "PyTorch models' over every seed of the sweep (an artifact's own accuracy is in its "
                       "manifest). On the front: no other configuration on this device, in any runtime, is both faster and more accurate (the plot marks the front per runtime)."))


def pareto_plot(device: str, points: list[ParetoPoint], path: Path) -> None:
    """One panel per runtime: mean accuracy (95% CI) against p50 latency, the front joined and filled."""
    runtimes = ordered((p.runtime for p in points), RUNTIMES)
    detail = len({(p.precision, p.threads) for p in points}) > 1
    fig = Figure(figsize=(5.2 * len(runtimes), 4.4), layout="constrained")
    axes = fig.subplots(1, len(runtimes), sharey=True, squeeze=False)[0]
    for ax, runtime in zip(axes, runtimes):
        here = [p for p in points if p.runtime == runtime]
        best = front(here)
        for p in here:
            colour = f"C{MECHANISMS.index(p.mechanism)}"
            err = None if p.accuracy.low is None else [[(p.accuracy.mean - p.accuracy.low) * 100],
                                                       [(p.accuracy.high - p.accuracy.mean) * 100]]
            ax.errorbar(p.ms, p.accuracy.mean * 100, yerr=err, fmt=MARKERS.get(p.precision, "o"), color=colour,
                        markerfacecolor=colour if p in best else "white", markersize=8, capsize=3)
            ax.annotate(p.label(detail), (p.ms, p.accuracy.mean * 100), textcoords="offset points",
                        xytext=(6, 4), fontsize="small")
        ax.plot([p.ms for p in best], [p.accuracy.mean * 100 for p in best], drawstyle="steps-post",
                color="grey", linestyle="--", linewidth=1, label="Pareto front (filled markers)")
        ax.set_title(f"{device} · {runtime}")
        ax.set_xlabel("p50 latency, ms per inference")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    axes[0].set_ylabel("test accuracy %, mean over seeds (95% CI)")
    save_png(fig, path)
