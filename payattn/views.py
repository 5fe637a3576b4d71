"""What the command line shows: consoles, the progress bar, one log sink, and every table.

`payattn.cli` parses options, calls the library and hands what comes back to these views; none
of them decides an exit code. Tables are printed at their natural width when piped (a log, CI),
so no column is cut at 80 characters or truncated with "…".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from rich.markup import escape
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TransferSpeedColumn)
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)
PIPED_WIDTH = 100_000  # rich draws a table at its natural width, never padded to this


def print_error(message: str) -> None:
    """One line on stderr: `error: MESSAGE`, the message printed as it is (no Rich markup)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", " ".join(message.split())),
                      soft_wrap=True, highlight=False)


def say(message: str) -> None:
    """A plain line on stdout, never read as Rich markup."""
    console.print(message, markup=False, highlight=False)


def log(message: str, out: Console = err_console) -> None:
    """The one log sink: a dim line on stderr (or a progress bar's console), never markup."""
    out.print(message, style="dim", highlight=False, markup=False, soft_wrap=True)


def table_console() -> Console:
    """Where tables go: the terminal, or for piped output a console as wide as any table."""
    return console if console.is_terminal else Console(width=PIPED_WIDTH)


def make_table(columns: tuple[str, ...], left: tuple[str, ...] = (), title: str | None = None) -> Table:
    """A table whose columns are right-aligned numbers except those named in `left`."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


class ProgressBar(Progress):
    """Rich's progress display, gone when the command fails: the error is then the one line."""

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.live.transient = True
        super().__exit__(exc_type, *rest)


def progress_bar() -> Progress:
    return ProgressBar(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
        console=err_console, transient=False,
    )


def download_bar(label: str = "benchmark_model") -> Callable[[int, Optional[int]], None]:
    """A bytes bar for a download, drawn from its first chunk and closed at its last."""
    state: dict[str, Any] = {}

    def update(done: int, total: Optional[int]) -> None:
        if "bar" not in state:
            state["bar"] = ProgressBar(TextColumn(f"[bold]{label}"), BarColumn(), DownloadColumn(),
                                       TransferSpeedColumn(), console=err_console, auto_refresh=False)
            state["bar"].start()
            state["task"] = state["bar"].add_task(label, total=total)
        state["bar"].update(state["task"], completed=done)
        state["bar"].refresh()
        if total is not None and done >= total:
            state["bar"].stop()

    return update


def eta(bar: Progress, job: Any) -> str:
    """Time left at the pace so far (rich's estimate), or ? before the first point ends."""
    left = next(t.time_remaining for t in bar.tasks if t.id == job)
    return "?" if left is None else f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"


def bar_hooks(bar: Progress) -> Any:
    """Pipeline hooks that draw each training and export as a line of the shared progress bar."""
    from payattn.hooks import Hooks

    jobs: dict[str, Any] = {}

    def training(label: str) -> Callable[[int, int, float], None]:
        jobs[label] = job = bar.add_task(label, total=None, status="")
        return lambda step, total, loss: bar.update(job, completed=step, total=total,
                                                    status=f"loss {loss:.3f}")

    def exporting(label: str) -> Callable[[str], None]:
        jobs[label] = job = bar.add_task(label, total=None, status="")
        return lambda step: bar.update(job, status=step)

    def done(label: str, status: str) -> None:
        bar.update(jobs[label], total=1, completed=1, status=status)

    return Hooks(log=lambda message: log(message, bar.console), on_result=print_result,
                 training=training, exporting=exporting, done=done)


# ---- info, tasks, train, sweep --------------------------------------------------------------

def cost_table(preset: str, configs: list[Any], costs: list[Any]) -> Table:
    """Parameters and FLOPs of each mechanism, with the ratio to standard (the first)."""
    cfg, base = configs[0], costs[0]
    vocab = f", vocab={cfg.vocab_size}" if cfg.kind == "text" else ""
    table = make_table(("mechanism", "heads", "attention params", "model params", "attention FLOPs",
                        "model FLOPs"), left=("mechanism",),
                       title=f"{preset}: ℓ={cfg.context_length}, d_m={cfg.d_model}, "
                             f"depth={cfg.depth}, MLP={cfg.mlp_dim}{vocab}")
    for c, k in zip(configs, costs):
        table.add_row(c.mechanism, str(c.heads), *(f"{value:,} ({value / ref:.2f}×)" for value, ref in (
            (k.attention_params, base.attention_params), (k.params, base.params),
            (k.attention_flops, base.attention_flops), (k.flops, base.flops))))
    return table


def tasks_table(tasks: list[Any]) -> Table:
    table = make_table(("task", "kind", "default preset", "data", "description"),
                       left=("task", "kind", "default preset", "data", "description"), title="tasks")
    for t in tasks:
        table.add_row(t.name, t.kind, t.default_preset, "shipped" if t.embedded else "--data-dir",
                      t.description)
    return table


def training_summary(task: str, rows: list[tuple[str, Path, dict[str, Any]]]) -> Table:
    table = make_table(("mechanism", "params", "attention params", "test accuracy", "train time",
                        "run dir"), left=("mechanism", "run dir"), title=f"training summary: {task}")
    for mech, run_dir, m in rows:
        table.add_row(mech, f"{m['params']:,}", f"{m['attention_params']:,}",
                      f"{m['test_accuracy']:.2%}", f"{m['train_seconds']:.1f} s", str(run_dir))
    return table


def sweep_progress(bar: Progress, total: int) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
    """The sweep's bar (one step per finished point) and its line per point, as the two
    callbacks of payattn.sweep.run_sweep."""
    job = bar.add_task("sweep", total=total, status="")

    def on_status(s: Any) -> None:
        bar.update(job, completed=s.finished, status=f"running {s.running} · failed {s.failed} · "
                   f"skipped {s.skipped} · ETA {eta(bar, job)}")

    def on_result(r: Any) -> None:
        if r.status == "done":
            text = f"{r.point.id}: test accuracy {r.metrics['test_accuracy']:.2%} in {r.seconds:.0f} s"
            bar.console.print(text, highlight=False, markup=False)
        else:
            bar.console.print(f"{r.point.id} failed: {r.error}", style="red", highlight=False,
                              markup=False)

    return on_status, on_result


def print_sweep_outcome(folder: Path, results: list[Any]) -> bool:
    """The accuracy and claims tables of what finished, then a line on what failed (and how to
    resume). Returns whether every point finished."""
    from payattn.report.claims import accuracy_claims, accuracy_table, claims_table, load_sweep

    failed = [r for r in results if r.status == "failed"]
    if len(failed) < len(results):
        _, runs = load_sweep(folder)
        print_tables([accuracy_table(runs), claims_table(accuracy_claims(runs))])
    if failed:
        err_console.print(f"{len(failed)} point(s) failed (see above and {folder / 'sweep.json'}); "
                          "fix the cause and run the same command again: finished points are "
                          "skipped", style="bold red", markup=False)
    return not failed


# ---- export, inspect ------------------------------------------------------------------------

def _limit(value: float, limit: float | None) -> str:
    return f"{value:.1e} ≤ {limit:.2g}" if limit is not None else f"{value:.1e} (no limit)"


def _floor(value: float, floor: float | None) -> str:
    return f"{value:.1%} ≥ {floor:.0%}" if floor is not None else f"{value:.1%} (no floor)"


def export_summary(manifests: list[Any]) -> Table:
    """Each artifact's checks against their limits, as verified (an export that missed one failed)."""
    from payattn.report.tables import fmt_bytes
    from payattn.runtime.parity import problems

    table = make_table(("mechanism", "artifact", "size", "max |Δ logit| ≤ limit",
                        "top-1 agreement ≥ floor", "test accuracy", "ops", "checks"),
                       left=("mechanism", "artifact", "checks"),
                       title="export summary: every artifact against PyTorch")
    for m in manifests:
        verification = m["verification"]
        limits, floors = verification["max_abs_diff"], verification["min_top1_agreement"]
        for a in m["artifacts"]:
            parity, limit, floor = a["parity"], limits.get(a["precision"]), floors.get(a["precision"])
            passed = not problems(a["file"], a["precision"], parity, limit, floor,
                                  verification["test_samples"])
            table.add_row(m["mechanism"], a["file"], fmt_bytes(a["bytes"]),
                          _limit(parity["max_abs_diff"], limit), _floor(parity["top1_agreement"], floor),
                          f"{a['test_accuracy']:.2%}", str(a["operator_count"]),
                          "pass" if passed else "FAIL")
    notes = road_notes(manifests)
    if notes:
        table.caption = "\n".join(notes)
    return table


def print_export(jobs: list[Any], manifests: list[Any]) -> None:
    """The export summary, then where each artifact dir went (and which run was trained first)."""
    table_console().print(export_summary(manifests))
    for job in jobs:
        trained = f" (model trained first into {job.run_dir})" if job.trained else ""
        say(f"wrote {job.out_dir}{trained}")


def road_notes(manifests: list[Any]) -> list[str]:
    """Per export, each road's conversion time when several were taken, the precisions a road
    left out and why, and a road that failed."""
    notes = []
    for m in manifests:
        roads = m.get("roads", {})
        for name, road in roads.items():
            if "failed" in road:
                notes.append(f"{m['mechanism']}: the {name} road failed and wrote nothing: {road['failed']}")
            for precision, why in road.get("left_out", {}).items():
                notes.append(f"{m['mechanism']}: {name} left out {precision}: {why}")
        if len(roads) > 1:
            times = ", ".join(f"{name} {road['seconds']:.1f} s" for name, road in roads.items())
            notes.append(f"{m['mechanism']}: conversion time by road: {times}")
    return notes


def print_inspection(info: dict[str, Any]) -> None:
    """`payattn inspect`: what an app runtime sees in a .tflite."""
    aligned = "aligned for mmap" if info["aligned"] else "[red]not aligned[/]"
    console.print(f"[bold]{info['file']}[/] · {info['bytes']:,} bytes · buffers {aligned}")
    no_signature = [("signatures", {"inputs": ["none"], "outputs": []})]
    for key, sig in info["signatures"].items() or no_signature:
        console.print(f"signature [bold]{key}[/]: {', '.join(sig['inputs'])} → {', '.join(sig['outputs'])}")
    for role in ("inputs", "outputs"):
        for t in info[role]:
            console.print(f"{role[:-1]:>6} {t['name']}: {t['dtype']} {t['shape']}")
    md = info["metadata"]
    if md is None:
        console.print("metadata: none")
    else:
        console.print(f"metadata: {md['name']} v{md['version']} · {md['license']} · "
                      f"parser ≥ {md['minParserVersion']}")
        for role in ("input", "output"):
            item = {k: v for k, v in md[role].items() if k not in ("name", "description")}
            console.print(f"  {role} {md[role]['name']}: {md[role]['description']}")
            for key, value in item.items():
                console.print(f"    {key}: {value}", highlight=False)
    ops = ", ".join(f"{name}×{count}" for name, count in info["operators"].items())
    console.print(f"operators ({sum(info['operators'].values())}): {ops}", highlight=False)
    x = info["xnnpack"]
    outside = ", ".join(f"{n}×{c}" for n, c in x["outside"].items()) or "none"
    whole = "takes the whole graph" if x["fully_delegated"] else "[yellow]partial[/]"
    console.print(f"XNNPACK (LiteRT CPU): {whole} · {x['partitions']} partition(s) · "
                  f"left outside: {outside}")
    gpu = info.get("gpu")
    if gpu is None:
        console.print("GPU delegate: not recorded (no manifest.json from the export beside the file)")
    else:
        verdict = "compatible" if gpu["compatible"] else "[yellow]issues[/]: " + "; ".join(gpu["issues"])
        console.print(f"GPU delegate ({gpu['analyzer']}): {verdict}", highlight=False)


# ---- bench, verify, report --------------------------------------------------------------------

def result_row(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    p50 = lat["p50"] if lat["p50"] is not None else lat["mean"]
    spread = (f"p10–p90 {lat['p10']:.3f}–{lat['p90']:.3f}" if lat["p10"] is not None
              else f"mean {lat['mean']:.3f}")
    runtime = result["runtime"]["name"] + (" gpu" if result.get("accelerator") == "gpu" else "")
    delegation = result.get("delegation") or {}
    partial = (f"  GPU took {delegation['nodes_delegated']} of {delegation['nodes_total']} nodes"
               if delegation.get("status") == "partial" else "")
    return (f"{result['device']['name']:<10} {runtime:<15} "
            f"{result['artifact']['precision']:<13} {result['threads']}t {result['mechanism']:<10} "
            f"p50 {p50:8.3f} ms  {spread} ms  runs {result['runs']}{partial}")


def print_failures(failures: list[Any], measured: int, results: Path) -> bool:
    """Each device failure as an error line, and where the others' results were kept. Returns
    whether there was none."""
    for failure in failures:
        print_error(failure.message)
    if failures:
        err_console.print(f"{measured} result(s) were measured and kept in {results}", markup=False)
    return not failures


def print_result(result: dict[str, Any]) -> None:
    say(result_row(result))


def parity_row(line: dict[str, Any]) -> list[str]:
    parity, limits, export = line["parity"], line["limits"], line.get("export_parity") or {}
    limit = f" (≤ {limits['max_abs_diff']:.2g})" if limits["max_abs_diff"] is not None else ""
    floor = f" (≥ {limits['min_top1_agreement']:.0%})" if limits["min_top1_agreement"] is not None else ""
    exported = f"{export['max_abs_diff']:.2e}" if "max_abs_diff" in export else "-"
    device = line["device"]
    where = f"{device['name']} ({device['arch']}{', emulated' if device.get('emulated') else ''})"
    return [where, line["mechanism"], line["artifact"]["file"], line["runtime"]["name"],
            f"{parity['max_abs_diff']:.2e}{limit}", exported, f"{parity['top1_agreement']:.1%}{floor}",
            "pass" if line["passed"] else "FAIL"]


def print_parity(lines: list[dict[str, Any]], failures: list[Any], devices: list[str]) -> bool:
    """The parity table, then one error line per missed tolerance and per failed device.
    Returns whether everything passed."""
    table = make_table(("device", "mechanism", "artifact", "runtime", "max |Δ| (limit)", "at export",
                        "top-1 agree (floor)", "result"),
                       left=("device", "mechanism", "artifact", "runtime"),
                       title=f"parity with PyTorch on {', '.join(devices)}")
    for line in lines:
        table.add_row(*parity_row(line))
    table_console().print(table)
    for line in lines:
        for problem in line["problems"]:
            print_error(f"parity on {line['device']['name']}: {problem}")
    for failure in failures:
        print_error(failure.message)
    return not failures and all(line["passed"] for line in lines)


def print_tables(tables: Any) -> None:
    """Report tables (payattn.report.Table) in the terminal, each with its note."""
    out = table_console()
    for t in tables:
        table = Table(title=t.title)
        for i, col in enumerate(t.columns):
            table.add_column(col, justify="left" if i in t.left else "right")
        for row in t.rows:
            table.add_row(*row)
        out.print(table)
        if t.note:
            out.print(t.note, style="dim")


def print_headlines(results: Any) -> None:
    """The report's Table 5-style headline tables, in the terminal."""
    from payattn.report import headline_tables

    print_tables(headline_tables(results))


def print_report(results: Path | None, paths: Any) -> None:
    """The headline tables of `results` (if any), then where the report's files are."""
    if results is not None:
        print_headlines(results)
    say(f"report: {paths.md}\n        {paths.html}\n        {paths.csv}")


def print_demo(outcome: Any) -> None:
    """The demo's headline tables, its time and where its report is."""
    print_headlines(outcome.results)
    say(f"demo finished in {outcome.seconds:.0f} s\nreport: {outcome.report.md}\n"
        f"        {outcome.report.html}")


def devices_table(specs: list[Any]) -> Table:
    table = make_table(("name", "kind", "target"), left=("name", "kind", "target"))
    for spec in specs:  # an invalid entry's problem names [devices.NAME]: not markup
        table.add_row(spec.name, spec.kind, escape(spec.target))
    return table
