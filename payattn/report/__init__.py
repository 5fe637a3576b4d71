"""The report: results.jsonl in, Markdown / CSV / HTML tables and PNG plots out.

The headline table mirrors Table 5 of the paper (one row per mechanism: parameters, file
sizes, latency per device and runtime, measured and FLOP-model speed-ups, accuracy). All
outputs are rendered in a temporary folder and moved into place only when every one of them
succeeded, so a failure never leaves a half report.
"""

from __future__ import annotations

import base64
import csv
import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from payattn.errors import PayattnError
from payattn.files import check_replaceable, check_writable, foreign_reason, owned
from payattn.locks import locked, lock_inside
from payattn.report.plots import latency_plot, plot_slug, size_plot
from payattn.report.claims import load_sweep
from payattn.report.sweep import sweep_blocks
from payattn.report.roads import roads_tables
from payattn.report.results import CSV_COLUMNS, Result, as_results, csv_row, latest, load_results
from payattn.report.tables import (Table, artifact_table, conditions_table, groups, headline,
                                   latency_tables, profile_table, verdict)

__all__ = ["ReportPaths", "Table", "report", "headline_table", "headline_tables", "load_results"]

Results = Union[Path, str, Iterable[Union[Mapping[str, Any], Result]]]

# A document is a list of blocks that both renderers understand.
Block = tuple[str, Any]  # ("h1"|"h2"|"h3"|"p"|"lead", text) | ("table", Table) | ("img", (path, alt))

# Wide enough for a headline of three devices × two runtimes at 1400 px; prose stays narrow.
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1800px;
padding:0 1rem;color:#222;line-height:1.45}p{max-width:60rem}p.lead{font-size:1.15rem;font-weight:600}
th{white-space:normal;vertical-align:bottom;min-width:4.5rem}
h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem}td{white-space:nowrap}th{background:#f3f3f3}
td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}td.l,th.l{text-align:left}
tbody tr:nth-child(even){background:#fafafa}p.note{color:#555;font-size:.9rem}p.title{font-weight:600;margin-bottom:0}
img{max-width:100%;height:auto;border:1px solid #eee}
"""


@dataclass(frozen=True)
class ReportPaths:
    md: Path
    csv: Path
    html: Path
    plots: list[Path]


def headline_tables(results: Results) -> list[Table]:
    """One headline Table per task × preset (for a rich.Table: .title, .columns, .rows)."""
    used = latest(as_results(results))
    return [headline([r for r in used if r.group == g]) for g in groups(used)]


def headline_table(results: Results) -> str:
    """The headline tables as Markdown, for printing after a demo."""
    return "\n\n".join(f"### {t.title}\n\n{t.to_markdown()}\n\n{t.note}" for t in headline_tables(results))


def _intro(source: Path, total: int, used: list[Result]) -> list[Block]:
    verdicts: list[Block] = [("lead", verdict([r for r in used if r.group == g])) for g in groups(used)]
    return [
        ("h1", "payattn report"), *verdicts,
        ("p", f"Source: {source} — {total} result lines, {len(used)} used. When a configuration "
              "(task × preset × mechanism × artifact format × precision × runtime × device × "
              "threads) was measured more than once, only its latest line (by timestamp) is used; "
              f"{total - len(used)} older lines are left out of the tables and plots but kept in "
              "report.csv (column used_in_tables = 0)."),
        ("p", "Latency is the wall time of one inference in ms: p50 with p10–p90. Speed-up = "
              "standard's p50 ÷ the mechanism's p50 on the same device, runtime, precision and "
              "thread count (above 1 is faster). FLOP-model speed-up = standard's FLOPs ÷ the "
              "mechanism's, from payattn.cost (multiply-add = 2; softmax, norms and biases "
              "ignored). — marks what was not measured. ᵃ marks a mean standing in for p50: "
              "TFLite's benchmark_model (Android) prints no percentiles, at most a median, so where "
              "either side lacks a median the speed-up compares means on both sides, and its "
              "p10–p90 shows — (hatched bar without whisker in the plots)."),
    ]


def _render_markdown(blocks: list[Block]) -> str:
    parts = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + value)
        elif kind == "p":
            parts.append(value)
        elif kind == "lead":
            parts.append(f"**{value}**")
        elif kind == "table":
            note = f"\n\n{value.note}" if value.note else ""
            title = f"**{value.title}**\n\n" if value.title else ""
            parts.append(f"{title}{value.to_markdown()}{note}")
        else:
            rel, alt = value
            parts.append(f"![{alt}]({rel})")
    return "\n\n".join(parts) + "\n"


def _render_html(blocks: list[Block], root: Path) -> str:
    parts = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind in ("p", "lead"):
            parts.append(f'<p class="{kind}">{html.escape(value)}</p>')
        elif kind == "table":
            note = f'<p class="note">{html.escape(value.note)}</p>' if value.note else ""
            title = f'<p class="title">{html.escape(value.title)}</p>' if value.title else ""
            parts.append(f'{title}<div class="scroll">{value.to_html()}</div>{note}')
        else:
            rel, alt = value
            data = base64.b64encode((root / rel).read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
                         f"<figcaption>{html.escape(alt)}</figcaption></figure>")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>payattn report</title><style>{CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


# A cell a spreadsheet would run as a formula starts with one of these (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def spreadsheet_safe(cell: Any) -> Any:
    """`cell` as a spreadsheet reads it as data: text starting like a formula gets a leading
    single quote (OWASP's rule); numbers, and text that is just a number, are left as they are."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START) and not PLAIN_NUMBER.match(cell):
        return "'" + cell
    return cell


def _write_csv(path: Path, results: list[Result], used: list[Result]) -> None:
    used_lines = {r.line for r in used}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow([spreadsheet_safe(cell) for cell in csv_row(r, r.line in used_lines)])


REPORT_FILES = ("report.md", "report.csv", "report.html")
# What report writes into plots/ (latency-*, size-*, and a sweep's pareto-* figures).
PLOT_NAME = re.compile(r"^(latency|size|pareto)-[A-Za-z0-9._-]+\.png$")


def _publish(staging: Path, out_dir: Path, names: list[str]) -> None:
    """Move the finished plots folder and files from staging into out_dir."""
    plots = out_dir / "plots"
    if plots.exists():
        os.replace(plots, staging / "previous-plots")  # removed with the staging folder
    os.replace(staging / "plots", plots)
    for name in names:
        os.replace(staging / name, out_dir / name)


def report(results_path: Path | None, out_dir: Path, sweeps: Iterable[Path] = (), *,
           force: bool = False, wait: bool = False) -> ReportPaths:
    """Write report.md, report.csv, report.html and plots/*.png for a results.jsonl into out_dir,
    with a section per sweep folder (accuracy over seeds, claims, Pareto per device). An
    existing report there is replaced only with `force`, and only if payattn wrote it; the
    folder is locked meanwhile (`wait`: wait for another writer instead of failing)."""
    out_dir = Path(out_dir)
    results = load_results(Path(results_path)) if results_path is not None else []
    loaded = [(Path(folder), load_sweep(Path(folder))) for folder in sweeps]
    used = latest(results)
    if out_dir.exists() and not out_dir.is_dir():
        raise PayattnError(f"report folder {out_dir} is a file; pass a folder path (it is created if missing)")
    check_writable(out_dir, "--out")
    check_report_target(out_dir, force)  # before locking: a refusal here creates nothing
    with locked([(lock_inside(out_dir), out_dir)], wait=wait):
        check_report_target(out_dir, force)  # again: another writer may have been first
        return _write(results_path, results, used, loaded, out_dir)


def check_report_target(out_dir: Path, force: bool) -> None:
    """Refuse report files in `out_dir` that payattn did not write (by type and content), and
    payattn's own without `force`."""
    for name in REPORT_FILES:
        path = out_dir / name
        if (path.exists() or path.is_symlink()) and not owned(path):
            raise PayattnError(f"{path} was not written by payattn ({foreign_reason(path)}); report "
                               f"replaces only a report it wrote: move it away or choose another --out")
    if (out_dir / "plots").exists() or (out_dir / "plots").is_symlink():
        ours = [p.name for p in (out_dir / "plots").iterdir() if PLOT_NAME.match(p.name)] \
            if (out_dir / "plots").is_dir() else []
        check_replaceable(out_dir / "plots", ours, "plots folder of a report", "choose another --out")
    existing = [name for name in (*REPORT_FILES, "plots") if (out_dir / name).exists()]
    if existing and not force:
        raise PayattnError(f"{out_dir} already holds a report ({', '.join(existing)}); pass --force "
                           f"to replace it, or choose another --out")


def _write(results_path: Path | None, results: list[Result], used: list[Result],
           loaded: list[tuple[Path, Any]], out_dir: Path) -> ReportPaths:
    """Render every output in a staging folder inside `out_dir`, then move them into place."""
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
    try:
        (staging / "plots").mkdir()
        blocks = _intro(results_path, len(results), used) if results else [("h1", "payattn report")]
        plot_names: list[str] = []
        taken: set[str] = set()
        for task, preset in groups(used):
            rs = [r for r in used if r.group == (task, preset)]
            slug = plot_slug(f"{task}-{preset}", taken)
            latency_png, size_png = f"plots/latency-{slug}.png", f"plots/size-{slug}.png"
            latency_plot(rs, staging / latency_png)
            size_plot(rs, staging / size_png)
            plot_names += [latency_png, size_png]
            blocks += [("h2", f"{task} / {preset}"), ("h3", "Headline"), ("table", headline(rs)),
                       ("img", (latency_png, f"{task} / {preset}: latency per mechanism (p50, p10–p90)")),
                       ("h3", "Artifacts"), ("table", artifact_table(rs)),
                       ("img", (size_png, f"{task} / {preset}: file size per mechanism and precision")),
                       ("h3", "Latency, every configuration")]
            blocks += [("table", t) for t in latency_tables(rs)]
            road_tables = roads_tables(rs)
            if road_tables:
                blocks += [("h3", "Every road")] + [("table", t) for t in road_tables]
            profiles = profile_table(rs)
            if profiles is not None:
                blocks += [("h3", "Time per operator"), ("table", profiles)]
        for folder, sweep in loaded:
            sweep_part, sweep_plots = sweep_blocks(folder, sweep, results, staging, taken)
            blocks += sweep_part
            plot_names += sweep_plots
        if used:
            blocks += [("h2", "Measurement conditions"), ("table", conditions_table(used))]
        (staging / "report.md").write_text(_render_markdown(blocks), encoding="utf-8")
        (staging / "report.html").write_text(_render_html(blocks, staging), encoding="utf-8")
        _write_csv(staging / "report.csv", results, used)
        _publish(staging, out_dir, list(REPORT_FILES))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReportPaths(md=out_dir / "report.md", csv=out_dir / "report.csv",
                       html=out_dir / "report.html", plots=[out_dir / p for p in plot_names])
