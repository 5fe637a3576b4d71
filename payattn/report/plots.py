"""PNG plots of latency and size per mechanism, drawn with matplotlib's Agg canvas.

Figures are built with the object API on their own Agg canvas, so rendering never touches
pyplot's global state or needs a display.
"""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from payattn.mechanisms import MECHANISMS
from payattn.report.results import PRECISIONS, RUNTIMES, Result
from payattn.report.tables import artifact_kinds, devices, ordered, typical_ms


def _grouped_offsets(count: int, width: float = 0.8) -> tuple[list[float], float]:
    """Bar offsets around each x position for `count` series side by side."""
    bar = width / max(count, 1)
    return [(i - (count - 1) / 2) * bar for i in range(count)], bar


def plot_slug(text: str, taken: set[str]) -> str:
    """A file-name-safe form of `text`, numbered -2, -3, … past the slugs in `taken` (then added),
    so plots of one report never overwrite each other."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "results"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def save_png(fig: Figure, path: Path) -> None:
    """Write `fig` to `path` as every plot of the report is written: PNG, one dpi, no version stamp."""
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})


def _series_order(series: tuple[str, str, int]) -> tuple[int, str, int, int]:
    runtime, precision, threads = series
    return (RUNTIMES.index(runtime) if runtime in RUNTIMES else len(RUNTIMES), runtime,
            PRECISIONS.index(precision), threads)


def latency_plot(results: list[Result], path: Path) -> None:
    """One panel per device: p50 bars per mechanism for each runtime × precision × threads,
    whiskers from p10 to p90; a series keeps its colour across panels. A line without a median
    (benchmark_model) gets a hatched bar of its mean and, lacking p10/p90, no whisker."""
    task, preset = results[0].group
    names = devices(results)
    all_series = sorted({(r.runtime, r.precision, r.threads) for r in results}, key=_series_order)
    colours = {s: f"C{i % 10}" for i, s in enumerate(all_series)}
    fig = Figure(figsize=(max(6.0, 4.5 * len(names)), 4.8), layout="constrained")
    any_mean = False
    for index, device in enumerate(names, start=1):
        ax = fig.add_subplot(1, len(names), index)
        on_device = [r for r in results if r.device == device]
        mechs = ordered((r.mechanism for r in on_device), MECHANISMS)
        series = [s for s in all_series if any((r.runtime, r.precision, r.threads) == s for r in on_device)]
        offsets, bar = _grouped_offsets(len(series))
        for offset, (runtime, precision, threads) in zip(offsets, series):
            colour = colours[(runtime, precision, threads)]
            for x, m in enumerate(mechs):
                hit = [r for r in on_device
                       if (r.mechanism, r.runtime, r.precision, r.threads) == (m, runtime, precision, threads)]
                if not hit:
                    continue
                r = hit[-1]
                height, is_mean = typical_ms(r)
                any_mean |= is_mean
                ax.bar(x + offset, height, bar, color=colour, hatch="//" if is_mean else None,
                       edgecolor="white" if is_mean else None)
                p10, p90 = r.latency("p10"), r.latency("p90")
                if p10 is not None and p90 is not None:
                    ax.errorbar(x + offset, height, yerr=[[max(0.0, height - p10)], [max(0.0, p90 - height)]],
                                fmt="none", ecolor="black", capsize=2, linewidth=1)
        ax.set_xticks(range(len(mechs)), mechs)
        ax.set_title(f"{device} ({on_device[0].data['device']['kind']})")
        ax.set_ylabel("ms per inference: p50, whiskers p10–p90")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(color=colours[s]) for s in all_series]
    labels = [f"{rt} {prec} · {th} thread{'s' if th != 1 else ''}" for rt, prec, th in all_series]
    if any_mean:
        handles.append(Patch(facecolor="grey", hatch="//", edgecolor="white"))
        labels.append("hatched: mean, no median reported (no whisker)")
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize="small")
    fig.suptitle(f"{task} / {preset}: latency per inference")
    save_png(fig, path)


def size_plot(results: list[Result], path: Path) -> None:
    """File size per mechanism, one bar per artifact format × precision."""
    task, preset = results[0].group
    mechs = ordered((r.mechanism for r in results), MECHANISMS)
    kinds = artifact_kinds(results)
    fig = Figure(figsize=(max(6.0, 0.8 * len(mechs) * max(1, len(kinds))), 4.6), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    offsets, bar = _grouped_offsets(len(kinds))
    for offset, (file_format, precision) in zip(offsets, kinds):
        xs, sizes = [], []
        for x, m in enumerate(mechs):
            hit = [r for r in results if (r.mechanism, r.file_format, r.precision) == (m, file_format, precision)]
            if hit:
                xs.append(x + offset)
                sizes.append(hit[-1].data["artifact"]["bytes"] / 1024)
        ax.bar(xs, sizes, bar, label=f"{file_format} {precision}")
    ax.set_xticks(range(len(mechs)), mechs)
    ax.set_ylabel("file size KiB")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(5, len(kinds)), fontsize="small")
    ax.set_title(f"{task} / {preset}: artifact size")
    save_png(fig, path)
