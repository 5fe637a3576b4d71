"""The report's section for a sweep folder: accuracy over seeds, claim verdicts, Pareto per device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from payattn.report.claims import SweepRun, accuracy_claims, accuracy_table, claims_table
from payattn.report.paper import paper_table
from payattn.report.pareto import benched, latency_claims, pareto_plot, pareto_points, pareto_table, recommendation
from payattn.report.plots import plot_slug
from payattn.report.results import Result
from payattn.report.tables import device_label, devices, emulated_by


def sweep_blocks(folder: Path, loaded: tuple[dict[str, Any], list[SweepRun]], results: list[Result],
                 staging: Path, taken: set[str]) -> tuple[list[tuple[str, Any]], list[str]]:
    """Report blocks for one sweep (`loaded` by claims.load_sweep) and the plots written under
    staging/plots (relative names); `taken` holds the report's plot slugs, so two sweep folders
    with the same name get distinct plot files."""
    index, runs = loaded
    spec = index["spec"]
    lines = benched(folder, runs, results)
    blocks: list[tuple[str, Any]] = [
        ("h2", f"Sweep {folder}: {spec['task']}"),
        ("p", f"{len(runs)} finished points of {len(index['points'])}: mechanisms {', '.join(spec['mechanisms'])}; "
              f"seeds {', '.join(map(str, spec['seeds']))}; {spec['epochs']} epochs each."),
        ("table", accuracy_table(runs)),
    ]
    plots = []
    benched_results = [r for r in results if any(r.device == b.device for b in lines)]
    emulated = emulated_by(benched_results)
    blocks.append(("table", claims_table(accuracy_claims(runs) + latency_claims(runs, lines, emulated))))
    blocks.append(("table", paper_table(folder, spec, runs, lines, emulated)))
    for device in devices(benched_results):
        points, label = pareto_points(runs, lines, device), device_label(device, emulated)
        name = f"plots/pareto-{plot_slug(f'{folder.name}-{device}', taken)}.png"
        pareto_plot(label, points, staging / name)
        plots.append(name)
        caveat = (f" Its latencies are those of {emulated[device]} on the machine that ran it, not of the "
                  "device it stands in for." if device in emulated else "")
        blocks += [("h3", f"Accuracy against latency on {label}"), ("p", recommendation(label, points) + caveat),
                   ("img", (name, f"{spec['task']} on {label}: mean accuracy against p50 latency, Pareto front")),
                   ("table", pareto_table(label, points))]
    if not lines:
        blocks.append(("p", "No bench results of this sweep's models: export them with `payattn export --sweep "
                            f"{folder} --seeds 0` and bench the artifact dirs to add latency claims and the Pareto plot."))
    return blocks, plots
