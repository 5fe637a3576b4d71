"""The paper's headline claims by version, beside what one sweep measured of each.

The claims are data (PAPER_CLAIMS); each names the metric it concerns, and the report finds
this sweep's counterpart of that metric, or says which command would measure it:

- accuracy gain: super − standard paired by seed, in points and as a share of standard's
  accuracy (the paper's "x% more accurate" may mean either);
- attention parameters: super's attention layer over standard's at the sweep's ℓ and d_m
  (payattn.cost), beside the whole models' counts from the runs' metrics.json;
- speed-up: standard's p50 over the mechanism's, paired by seed, per bench configuration;
- the CCT follow-up on CIFAR-100: the accuracy gain, when the sweep's task is cifar100 (a ViT).

Verdicts: consistent, not consistent, inconclusive (at this number of seeds), not measured.
An "up to" figure is the paper's best case, so any gain the interval confirms is consistent.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payattn.cost import attention_params
from payattn.report.claims import (INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Estimate, SweepRun, accuracies,
                                   paired, setting_label, settings, speedup_verdict)
from payattn.report.pareto import Benched, config_label, speedups
from payattn.report.tables import DASH, Table

GAIN, PARAMS, SPEED, CCT = ("accuracy gain over standard", "attention parameters vs standard",
                            "speed-up over standard", "CIFAR-100 top-1, standard → super (CCT)")
CONSISTENT, NOT_CONSISTENT, NOT_MEASURED = "consistent", "not consistent", "not measured"


@dataclass(frozen=True)
class PaperClaim:
    """One claim as a version of the paper states it."""

    version: str
    claim: str
    metric: str  # GAIN, PARAMS, SPEED or CCT: which counterpart the sweep can give
    figure: str  # the paper's figure, as it gives it
    mechanism: str = "super"


PAPER_CLAIMS = (
    PaperClaim("v1", "efficient attention is up to 2× faster than standard", SPEED, "up to 2×", "efficient"),
    PaperClaim("v2", "super attention is up to 17% more accurate than standard", GAIN, "up to 17%"),
    PaperClaim("v2", "super attention has 25% fewer parameters than standard", PARAMS, "25% fewer"),
    PaperClaim("v3", "super attention is up to 10% more accurate than standard", GAIN, "up to 10%"),
    PaperClaim("v3", "super attention is faster than standard", SPEED, "faster"),
    PaperClaim("v3", "super attention is 25% smaller than standard", PARAMS, "25% smaller"),
    PaperClaim("CCT follow-up", "super attention in a compact convolutional transformer on CIFAR-100",
               CCT, "36.50% → 46.29% top-1"),
)

Row = tuple[str, str, str, str]  # setting, this sweep, verdict, why


def _gain(runs: list[SweepRun], mechanism: str, prefix: str = "") -> list[Row]:
    rows = []
    for setting in settings(runs):
        base, mine = accuracies(runs, setting, "standard"), accuracies(runs, setting, mechanism)
        diff = paired(mine, base)
        if not diff:
            continue
        d = Estimate.of(diff)
        standard = statistics.fmean(base[s] for s in sorted(set(base) & set(mine)))
        where = prefix.format(standard=standard, mine=standard + d.mean)
        measured = (f"{where}{d.mean * 100:+.2f} points ({d.mean / standard:+.1%} of standard's {standard:.2%}), "
                    f"95% CI {d.interval(100)} points, {d.n} seed pair{'s' if d.n != 1 else ''}")
        if d.low is None:
            verdict, why = INCONCLUSIVE, "one seed: no interval"
        elif d.low > 0:
            verdict, why = CONSISTENT, "a gain: its 95% interval lies above 0"
        elif d.high <= 0:
            verdict, why = NOT_CONSISTENT, "no gain here: its 95% interval lies at or below 0"
        else:
            verdict, why = INCONCLUSIVE, f"its 95% interval spans 0 at {d.n} seeds"
        rows.append((setting_label(setting), measured, verdict, why))
    return rows


def _params(runs: list[SweepRun], mechanism: str) -> list[Row]:
    rows = []
    for setting in settings(runs):
        mine = next((r for r in runs if r.setting == setting and r.mechanism == mechanism), None)
        base = next((r for r in runs if r.setting == setting and r.mechanism == "standard"), None)
        if mine is None or base is None:
            continue
        ell, d = mine.context_length, mine.d_model
        ratio = attention_params(mechanism, d, ell, mine.bias) / attention_params("standard", d, ell, base.bias)
        measured = (f"attention layers {ratio:.2f}× ({1 - ratio:.0%} fewer); whole model "
                    f"{mine.params / base.params:.2f}× ({mine.params:,} vs {base.params:,})")
        shape = f"ℓ = {ell}, d_m = {d}"
        if ratio <= 0.75:
            rows.append((setting_label(setting), measured, CONSISTENT, f"{shape}: at least 25% fewer"))
        else:
            rows.append((setting_label(setting), measured, NOT_CONSISTENT,
                         f"{shape}: W^A's ℓ² outweighs the saving"))
    return rows


def _speed(runs: list[SweepRun], lines: list[Benched], mechanism: str, emulated: dict[str, str]) -> list[Row]:
    rows = []
    for setting in settings(runs):
        found = speedups([b for b in lines if b.setting == setting], mechanism)
        if not found:
            continue
        means = {c: math.exp(statistics.fmean(math.log(r) for r in ratios)) for c, ratios in found.items()}
        verdicts = [speedup_verdict(ratios)[0] for ratios in found.values()]
        if len(found) == 1:
            config, mean = next(iter(means.items()))
            measured = f"{mean:.2f}× on {config_label(config, emulated)}"
        else:
            low, high = f"{min(means.values()):.2f}×", f"{max(means.values()):.2f}×"
            measured = ((f"{low} on each of" if low == high else f"{low}–{high} over")
                        + f" {len(found)} bench configurations")
        faster = verdicts.count(SUPPORTED)
        if faster == len(verdicts):
            verdict, why = CONSISTENT, "at least 5% faster, interval above 1×, on every configuration"
        elif verdicts.count(NOT_SUPPORTED) == len(verdicts):
            verdict, why = NOT_CONSISTENT, "a 5% speed-up is ruled out on every configuration"
        else:
            verdict, why = INCONCLUSIVE, f"faster on {faster} of {len(verdicts)} configurations"
        rows.append((setting_label(setting), measured, verdict, why))
    return rows


def paper_table(folder: Path, spec: dict[str, Any], runs: list[SweepRun], lines: list[Benched],
                emulated: dict[str, str]) -> Table:
    """Each of PAPER_CLAIMS with this sweep's counterpart per setting and a verdict."""
    task = spec["task"]
    train = f"`payattn sweep -m standard,{{mech}} --seeds 5 --task {task} --out {folder}`"
    bench = (f"`payattn export --sweep {folder} --seeds 1`, `payattn bench {folder}/artifacts/*/seed-0 "
             f"--results {folder}/results.jsonl`, `payattn report {folder}/results.jsonl --sweep {folder}`")
    rows = []
    for c in PAPER_CLAIMS:
        missing = f"no trained standard and {c.mechanism} pair"
        if c.metric == GAIN:
            found, command = _gain(runs, c.mechanism), train.format(mech=c.mechanism)
        elif c.metric == PARAMS:
            found, command = _params(runs, c.mechanism), train.format(mech=c.mechanism)
        elif c.metric == SPEED:
            found, command = _speed(runs, lines, c.mechanism, emulated), bench
            missing = f"no bench results of its standard and {c.mechanism} models"
        elif task == "cifar100":
            found = _gain(runs, c.mechanism, "a ViT, not a CCT: {standard:.2%} → {mine:.2%}; ")
            command = train.format(mech=c.mechanism)
        else:
            found, missing = [], f"its task is {task}, not cifar100"
            command = (f"`payattn sweep -m standard,super --seeds 5 --task cifar100 --data-dir DIR` "
                       f"(payattn's CIFAR-100 model is a ViT, not the follow-up's CCT)")
        if not found:
            found = [(DASH, f"not measured by this sweep: {command}", NOT_MEASURED, missing)]
        rows += [[c.version, c.claim, c.metric, c.figure, *row] for row in found]
    return Table(
        title="the paper's claims by version",
        columns=["version", "the paper's claim", "metric", "paper's figure", "setting", "this sweep",
                 "verdict", "why"],
        rows=rows, left=set(range(8)),
        note=("The paper's own figures beside this sweep's counterparts. Consistent: the sweep confirms the "
              "claim's direction (a gain whose paired 95% interval lies above 0; a speed-up of at least 5% "
              "with its interval above 1× on every bench configuration; super's attention layers at least "
              "25% smaller at this ℓ and d_m). Not consistent: the sweep rules that out. Inconclusive: "
              "neither, at this number of seeds. An \"up to\" figure is the paper's best case on its own "
              "tasks; \"x% more accurate\" is shown both in points and as a share of standard's accuracy."),
    )
