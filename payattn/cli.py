"""The `payattn` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

try:
    import typer
except ModuleNotFoundError:  # `pip install payattn` alone is numpy only (what a device needs)
    raise SystemExit("the payattn command needs its command-line packages: pip install 'payattn[cli]'") from None
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from payattn import __version__
from payattn.errors import PayattnError
from payattn.mechanisms import ALIASES, MECHANISMS, expand_mechanisms, parse_precisions
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import PRECISIONS, RUNTIMES
from payattn.runtime.settings import BenchSettings, describe

console = Console()
err_console = Console(stderr=True)
PIPED_WIDTH = 100_000  # rich draws a table at its natural width, never padded to this


def print_error(message: str) -> None:
    """One line on stderr: `error: MESSAGE`, the message printed as it is (no Rich markup)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", " ".join(message.split())),
                      soft_wrap=True, highlight=False)


class OneLineErrors(TyperGroup):
    """A usage error (a bad value, a missing option) is one line naming it and where to look,
    like every other payattn error, instead of a usage block and a boxed panel."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            print_error("interrupted")
            code = 130
        except Exception as exc:
            if not hasattr(exc, "format_message") or not hasattr(exc, "exit_code"):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()
            else:
                ctx = getattr(exc, "ctx", None)
                where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                print_error(f"{exc.format_message()}{where}")
            code = exc.exit_code
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help="Standard, optimised, efficient and super attention: train, export to ONNX and "
    "builtin-only TFLite, benchmark on this machine, a Raspberry Pi or an Android phone. "
    "The commands below are in pipeline order.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def show_version(value: bool) -> None:
    if value:
        console.print(f"payattn {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Standard, optimised, efficient and super attention, from PyTorch to the edge."""

# Model-shape overrides shared by `info` and `train` (None keeps the preset's value).
DModelOpt = Annotated[Optional[int], typer.Option(help="Override the model width d_m.")]
HeadsOpt = Annotated[Optional[int], typer.Option(help="Override heads (default: preset's; 1 for efficient/super).")]
DepthOpt = Annotated[Optional[int], typer.Option(help="Override the number of blocks.")]
MlpOpt = Annotated[Optional[int], typer.Option(help="Override the MLP width.")]
PatchOpt = Annotated[Optional[int], typer.Option(help="Override the patch size (vision).")]
ContextOpt = Annotated[Optional[int], typer.Option(help="Override ℓ, the token count (text).")]

MECHANISM_HELP = f"One of {', '.join(MECHANISMS)} (alias {', '.join(ALIASES)}), a comma list, or all."
PRECISION_HELP = f"Comma list of {', '.join(PRECISIONS)}, or all."
RUNTIME_HELP = f"Comma list of {', '.join(RUNTIMES)}."
MECH_METAVAR = "[" + "|".join((*MECHANISMS, "all")) + "]"
PRECISION_METAVAR = "[" + "|".join((*PRECISIONS, "all")) + "]"
RUNTIME_METAVAR = "[" + "|".join(RUNTIMES) + "]"
DEFAULT_BENCH = BenchSettings()


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print a user-facing error as one line and exit 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (PayattnError, RuntimeJobError) as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:  # a disk or permission fault no check foresaw: still one line
            where = f"{exc.filename}: " if exc.filename else ""
            print_error(f"{where}{exc.strerror or exc}; check that path's permissions and free space")
            raise typer.Exit(2) from None

    return wrapper


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


def model_overrides(
    d_model: Optional[int], heads: Optional[int], depth: Optional[int], mlp_dim: Optional[int],
    patch_size: Optional[int], context_length: Optional[int], max_vocab: Optional[int],
    bias: bool,
) -> dict[str, Any]:
    return dict(d_model=d_model, heads=heads, depth=depth, mlp_dim=mlp_dim,
                patch_size=patch_size, context_length=context_length, max_vocab=max_vocab,
                bias=bias)


@app.command()
@friendly_errors
def info(
    preset: str = typer.Option("mnist-tiny", help="Model preset (see the list printed below)."),
    d_model: DModelOpt = None,
    heads: HeadsOpt = None,
    depth: DepthOpt = None,
    mlp_dim: MlpOpt = None,
    patch_size: PatchOpt = None,
    context_length: ContextOpt = None,
) -> None:
    """Parameters and FLOPs of each mechanism for a preset, side by side, with ratios to standard."""
    from payattn.cost import model_cost
    from payattn.models import PRESETS, get_preset, resolve_config

    p = get_preset(preset)
    overrides = dict(d_model=d_model, heads=heads, depth=depth, mlp_dim=mlp_dim,
                     patch_size=patch_size, context_length=context_length)
    configs = [resolve_config(p, m, **overrides) for m in MECHANISMS]
    costs = [model_cost(c) for c in configs]
    base = costs[0]
    cfg = configs[0]
    table = Table(title=f"{preset}: ℓ={cfg.context_length}, d_m={cfg.d_model}, depth={cfg.depth}, "
                        f"MLP={cfg.mlp_dim}" + (f", vocab={cfg.vocab_size}" if cfg.kind == "text" else ""))
    for col in ("mechanism", "heads", "attention params", "model params", "attention FLOPs",
                "model FLOPs"):
        table.add_column(col, justify="left" if col == "mechanism" else "right")
    for c, k in zip(configs, costs):
        table.add_row(
            c.mechanism, str(c.heads),
            *(f"{value:,} ({value / ref:.2f}×)" for value, ref in (
                (k.attention_params, base.attention_params), (k.params, base.params),
                (k.attention_flops, base.attention_flops), (k.flops, base.flops))),
        )
    table_console().print(table)
    console.print("(×) is the ratio to standard. FLOPs per input: multiply-add = 2; softmax, "
                  "norms and biases ignored. "
                  f"Presets: {', '.join(PRESETS)}.")


@app.command()
def tasks() -> None:
    """List the tasks: the embedded ones and the full datasets read from --data-dir."""
    from payattn.data import TASKS

    table = Table(title="tasks")
    for col in ("task", "kind", "default preset", "data", "description"):
        table.add_column(col)
    for t in TASKS.values():
        table.add_row(t.name, t.kind, t.default_preset, "shipped" if t.embedded else "--data-dir",
                      t.description)
    table_console().print(table)



def bar_hooks(bar: Progress) -> Any:
    """Pipeline hooks that draw each training and export as a line of the shared progress bar."""
    from payattn.pipeline import Hooks

    jobs: dict[str, Any] = {}

    def training(label: str) -> Callable[[int, int, float], None]:
        jobs[label] = job = bar.add_task(label, total=None, status="")
        return lambda step, total, loss: bar.update(job, completed=step, total=total, status=f"loss {loss:.3f}")

    def exporting(label: str) -> Callable[[str], None]:
        jobs[label] = job = bar.add_task(label, total=None, status="")
        return lambda step: bar.update(job, status=step)

    def done(label: str, status: str) -> None:
        bar.update(jobs[label], total=1, completed=1, status=status)

    return Hooks(log=lambda message: bar.console.print(message, style="dim", highlight=False, markup=False, soft_wrap=True),
                 on_result=lambda r: console.print(result_row(r), highlight=False, markup=False),
                 training=training, exporting=exporting, done=done)


@app.command()
@friendly_errors
def train(
    mechanism: str = typer.Option("all", "--mechanism", "-m", metavar=MECH_METAVAR, help=MECHANISM_HELP),
    task: str = typer.Option("mnist-5k", help="mnist-5k, movie-reviews, amazon-reviews (embedded) or mnist, cifar100, imdb, amazon (need --data-dir)."),
    preset: Optional[str] = typer.Option(None, help="Model preset; default: the task's."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs; default: the task's."),
    seed: int = typer.Option(0, help="Seed for weights and batch order (same seed, same model)."),
    out: Path = typer.Option(Path("runs"), help="Run dirs are written to OUT/TASK/MECHANISM."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the full dataset's official files (MNIST IDX .gz, cifar-100-python.tar.gz, aclImdb_v1.tar.gz or aclImdb/, Amazon train.csv/test.csv)."),
    d_model: DModelOpt = None,
    heads: HeadsOpt = None,
    depth: DepthOpt = None,
    mlp_dim: MlpOpt = None,
    patch_size: PatchOpt = None,
    context_length: ContextOpt = None,
    max_vocab: Optional[int] = typer.Option(None, help="Override the tokenizer's vocabulary cap (text)."),
    bias: bool = typer.Option(True, help="Biases in the attention projections."),
    threads: int = typer.Option(1, help="Torch threads for training (1–256); 1 is fastest for these small models on a busy machine."),
    force: bool = typer.Option(False, "--force", help="Replace existing run dirs (only payattn's own: model.pt, config.json, metrics.json, tokenizer.json)."),
) -> None:
    """Train one or all mechanisms on a task and write run dirs (model.pt, config.json, metrics.json)."""
    from payattn.data import load_task
    from payattn.files import check_writable
    from payattn.train import check_run_target, check_task_preset, check_train_options, default_epochs
    from payattn.train import train as train_one

    mechanisms = expand_mechanisms(mechanism)
    check_task_preset(task, preset)
    overrides = model_overrides(d_model, heads, depth, mlp_dim, patch_size, context_length,
                                max_vocab, bias)
    check_train_options(epochs=epochs if epochs is not None else default_epochs(task), seed=seed,
                        threads=threads, overrides=overrides)
    for mech in mechanisms:
        check_run_target(out / task / mech, force)
    check_writable(out, "--out")
    dataset = load_task(task, data_dir)
    rows = []
    with progress_bar() as bar:
        hooks = bar_hooks(bar)
        for mech in mechanisms:
            run_dir, label = out / task / mech, f"train {task}/{mech}"
            metrics = train_one(task, mech, run_dir, preset=preset, epochs=epochs, seed=seed,
                                data_dir=data_dir, overrides=overrides, dataset=dataset,
                                threads=threads, force=force, progress=hooks.training(label))
            hooks.done(label, f"test accuracy {metrics['test_accuracy']:.2%}")
            rows.append((mech, run_dir, metrics))
    table_console().print(training_summary(task, rows))


SWEEP_LIST = "Comma list of values to sweep (each is a point); default: the preset's."


@app.command()
@friendly_errors
def sweep(
    mechanism: str = typer.Option("all", "--mechanism", "-m", metavar=MECH_METAVAR, help=MECHANISM_HELP),
    seeds: str = typer.Option("5", help="A count (5 = seeds 0–4), a range (3-7) or a list (0,4,9)."),
    task: str = typer.Option("mnist-5k", help="The task, as for `payattn train`."),
    preset: Optional[str] = typer.Option(None, help="Comma list of presets to sweep; default: the task's."),
    d_model: Optional[str] = typer.Option(None, help="d_m values. " + SWEEP_LIST),
    heads: Optional[str] = typer.Option(None, help="Head counts (default: preset's; 1 for efficient/super). " + SWEEP_LIST),
    depth: Optional[str] = typer.Option(None, help="Block counts. " + SWEEP_LIST),
    mlp_dim: Optional[str] = typer.Option(None, help="MLP widths. " + SWEEP_LIST),
    patch_size: Optional[str] = typer.Option(None, help="Patch sizes (vision). " + SWEEP_LIST),
    context_length: Optional[str] = typer.Option(None, help="ℓ values (text). " + SWEEP_LIST),
    max_vocab: Optional[str] = typer.Option(None, help="Tokenizer vocabulary caps (text). " + SWEEP_LIST),
    epochs: Optional[int] = typer.Option(None, help="Training epochs of every point; default: the task's."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the full dataset's files (as for train)."),
    out: Optional[Path] = typer.Option(None, help="Sweep folder: runs/VARIANT/seed-N and sweep.json; default: sweeps/TASK."),
    workers: Optional[int] = typer.Option(None, help="Local processes, one torch thread each; default: the cores."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run the points as tasks on this Ray cluster (HOST:PORT, ray://…, or auto)."),
    force: bool = typer.Option(False, "--force", help="Retrain points that are already finished."),
) -> None:
    """Train mechanisms × seeds × presets × shape options; each point is a run dir. Finished points
    are skipped, so an interrupted sweep resumes; a failing point is reported and the rest go on."""
    from payattn.report.claims import accuracy_claims, accuracy_table, claims_table, load_sweep
    from payattn.sweep import SHAPE_OPTIONS, default_workers, make_spec, parse_seeds, run_sweep

    lists = dict(zip(SHAPE_OPTIONS, (d_model, heads, depth, mlp_dim, patch_size, context_length, max_vocab)))
    options = {name: parse_ints(value, f"--{name.replace('_', '-')}") for name, value in lists.items() if value}
    spec = make_spec(task, expand_mechanisms(mechanism), parse_seeds(seeds),
                     presets=split_list(preset, "--preset") if preset else None, options=options,
                     epochs=epochs, data_dir=data_dir)
    folder = out or Path("sweeps") / task
    where = f"Ray cluster {ray}" if ray else f"{workers or default_workers()} local process(es)"
    console.print(f"sweep {task}: {len(spec.points())} points on {where} → {folder}", markup=False)
    with progress_bar() as bar:
        job = bar.add_task("sweep", total=len(spec.points()), status="")

        def show(s: Any) -> None:
            bar.update(job, completed=s.finished, status=f"running {s.running} · failed {s.failed} · "
                       f"skipped {s.skipped} · ETA {eta(bar, job)}")

        def log(r: Any) -> None:
            done = r.status == "done"
            text = (f"{r.point.id}: test accuracy {r.metrics['test_accuracy']:.2%} in {r.seconds:.0f} s"
                    if done else f"{r.point.id} failed: {r.error}")
            bar.console.print(text, style=None if done else "red", highlight=False, markup=False)

        started = time.perf_counter()
        results = run_sweep(spec, folder, workers=workers, ray_address=ray, force=force,
                            on_status=show, on_result=log)
    console.print(f"sweep finished in {time.perf_counter() - started:.0f} s; index: {folder / 'sweep.json'}",
                  markup=False)
    failed = [r for r in results if r.status == "failed"]
    if len(failed) < len(results):
        _, runs = load_sweep(folder)
        print_tables([accuracy_table(runs), claims_table(accuracy_claims(runs))])
    if failed:
        err_console.print(f"{len(failed)} point(s) failed (see above and {folder / 'sweep.json'}); fix the "
                          "cause and run the same command again: finished points are skipped",
                          style="bold red", markup=False)
        raise typer.Exit(1)


def eta(bar: Progress, job: Any) -> str:
    """Time left at the pace so far (rich's estimate), or ? before the first point ends."""
    left = next(t.time_remaining for t in bar.tasks if t.id == job)
    return "?" if left is None else f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"


def training_summary(task: str, rows: list[tuple[str, Path, dict[str, Any]]]) -> Table:
    table = Table(title=f"training summary: {task}")
    for col in ("mechanism", "params", "attention params", "test accuracy", "train time", "run dir"):
        table.add_column(col, justify="left" if col in ("mechanism", "run dir") else "right")
    for mech, run_dir, m in rows:
        table.add_row(mech, f"{m['params']:,}", f"{m['attention_params']:,}",
                      f"{m['test_accuracy']:.2%}", f"{m['train_seconds']:.1f} s", str(run_dir))
    return table


def export_summary(manifests: list[Any]) -> Table:
    """Each artifact's checks against their limits, as verified (an export that missed one failed)."""
    from payattn.report.tables import fmt_bytes
    from payattn.runtime.parity import problems

    table = Table(title="export summary: every artifact against PyTorch")
    for col in ("mechanism", "artifact", "size", "max |Δ logit| ≤ limit", "top-1 agreement ≥ floor",
                "test accuracy", "ops", "checks"):
        table.add_column(col, justify="left" if col in ("mechanism", "artifact", "checks") else "right")
    for m in manifests:
        verification = m["verification"]
        limits, floors = verification["max_abs_diff"], verification["min_top1_agreement"]
        for a in m["artifacts"]:
            parity, limit, floor = a["parity"], limits.get(a["precision"]), floors.get(a["precision"])
            passed = not problems(a["file"], a["precision"], parity, limit, floor, verification["test_samples"])
            table.add_row(m["mechanism"], a["file"], fmt_bytes(a["bytes"]),
                          f"{parity['max_abs_diff']:.1e} ≤ {limit:.2g}" if limit is not None
                          else f"{parity['max_abs_diff']:.1e} (no limit)",
                          f"{parity['top1_agreement']:.1%} ≥ {floor:.0%}" if floor is not None
                          else f"{parity['top1_agreement']:.1%} (no floor)",
                          f"{a['test_accuracy']:.2%}", str(a["operator_count"]), "pass" if passed else "FAIL")
    return table



@app.command()
@friendly_errors
def export(
    mechanism: Optional[str] = typer.Option(None, "--mechanism", "-m", metavar=MECH_METAVAR, help=MECHANISM_HELP + " Default: all, or the checkpoint's."),
    checkpoint: Optional[list[Path]] = typer.Option(None, help="Run dir(s) from `payattn train`; without it the task's default model is trained first (or reused from --runs-dir when it is exactly that model)."),
    task: str = typer.Option("mnist-5k", help="Task to train on when no --checkpoint is given."),
    preset: Optional[str] = typer.Option(None, help="Preset to train when no --checkpoint is given; default: the task's."),
    epochs: Optional[int] = typer.Option(None, help="Epochs when training first; default: the task's."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder holding the full dataset files (overrides the one a checkpoint was trained from)."),
    precision: str = typer.Option("fp32,fp16,dynamic-int8", metavar=PRECISION_METAVAR, help=PRECISION_HELP),
    out: Path = typer.Option(Path("artifacts"), help="Artifact dirs are written to OUT/TASK/MECHANISM."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where models trained first are kept (RUNS_DIR/TASK/MECHANISM)."),
    force: bool = typer.Option(False, "--force", help="Replace existing artifact dirs (only payattn's own files in them)."),
    sweep: Optional[Path] = typer.Option(None, help="A folder from `payattn sweep`: export its finished points to SWEEP/artifacts/VARIANT/seed-N."),
    seeds: Optional[str] = typer.Option(None, help="With --sweep: the seeds to export: 0, a range 0-2 or a list 0,3 (default: all)."),
) -> None:
    """Export trained models to ONNX and builtin-only TFLite, verified against PyTorch, with a manifest."""
    from payattn.pipeline import export_pipeline
    from payattn.sweep import export_sweep, parse_seeds

    with progress_bar() as bar:
        if sweep:
            jobs, manifests = export_sweep(
                sweep, precision, seeds=parse_seeds(seeds, bare_is_count=False) if seeds else None,
                mechanisms=expand_mechanisms(mechanism) if mechanism else None, force=force,
                data_dir=data_dir, hooks=bar_hooks(bar))
        else:
            jobs, manifests = export_pipeline(
                checkpoints=checkpoint, mechanism=mechanism, task=task, preset=preset, epochs=epochs,
                data_dir=data_dir, precisions=precision, out=out, runs_dir=runs_dir, force=force,
                hooks=bar_hooks(bar))
    table_console().print(export_summary(manifests))
    for job in jobs:
        trained = f" (model trained first into {job.run_dir})" if job.trained else ""
        console.print(f"wrote {job.out_dir}{trained}")


def split_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise PayattnError(f"{option} needs at least one value")
    return items


def parse_ints(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in split_list(value, option)]
    except ValueError:
        raise PayattnError(f"{option} takes whole numbers separated by commas, got {value!r}") from None


def parse_threads(value: str) -> tuple[int, ...]:
    return tuple(parse_ints(value, "--threads"))


def default_artifact_dirs(root: Path, task: str, mechanisms: list[str]) -> list[Path]:
    dirs = [root / task / m for m in mechanisms]
    missing = [d for d in dirs if not (d / "manifest.json").is_file()]
    if missing:
        raise PayattnError(
            f"no exported artifacts in {', '.join(map(str, missing))}; run "
            f"`payattn export --mechanism {','.join(mechanisms)} --task {task} --out {root}` first "
            "or pass artifact dirs"
        )
    return dirs


def result_row(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    p50 = lat["p50"] if lat["p50"] is not None else lat["mean"]
    spread = (f"p10–p90 {lat['p10']:.3f}–{lat['p90']:.3f}" if lat["p10"] is not None
              else f"mean {lat['mean']:.3f}")
    return (f"{result['device']['name']:<10} {result['runtime']['name']:<15} "
            f"{result['artifact']['precision']:<13} {result['threads']}t {result['mechanism']:<10} "
            f"p50 {p50:8.3f} ms  {spread} ms  runs {result['runs']}")


def report_failures(failures: list[Any], measured: int, results: Path) -> None:
    """Print each device failure; exit 1 after the others ran, their results kept."""
    for failure in failures:
        print_error(failure.message)
    if failures:
        err_console.print(f"{measured} result(s) were measured and kept in {results}", markup=False)
        raise typer.Exit(1)


@app.command()
@friendly_errors
def inspect(
    artifact: Path = typer.Argument(..., help="A .tflite file, e.g. artifacts/mnist-5k/standard/model_fp32.tflite."),
    as_json: bool = typer.Option(False, "--json", help="Print the same facts as one JSON object."),
) -> None:
    """Show what an app runtime sees in a .tflite: signatures, tensors, metadata, operators, and
    whether LiteRT's CPU accelerator (XNNPACK) takes the whole graph."""
    import json

    from payattn.export.app import describe

    info = describe(artifact)
    if as_json:
        console.print_json(json.dumps(info))
        return
    console.print(f"[bold]{info['file']}[/] · {info['bytes']:,} bytes · buffers "
                  + ("aligned for mmap" if info["aligned"] else "[red]not aligned[/]"))
    for key, sig in info["signatures"].items() or [("signatures", {"inputs": ["none"], "outputs": []})]:
        console.print(f"signature [bold]{key}[/]: {', '.join(sig['inputs'])} → {', '.join(sig['outputs'])}")
    for role in ("inputs", "outputs"):
        for t in info[role]:
            console.print(f"{role[:-1]:>6} {t['name']}: {t['dtype']} {t['shape']}")
    md = info["metadata"]
    if md is None:
        console.print("metadata: none")
    else:
        console.print(f"metadata: {md['name']} v{md['version']} · {md['license']} · parser ≥ {md['minParserVersion']}")
        for role in ("input", "output"):
            item = {k: v for k, v in md[role].items() if k not in ("name", "description")}
            console.print(f"  {role} {md[role]['name']}: {md[role]['description']}")
            for key, value in item.items():
                console.print(f"    {key}: {value}", highlight=False)
    ops = ", ".join(f"{name}×{count}" for name, count in info["operators"].items())
    console.print(f"operators ({sum(info['operators'].values())}): {ops}", highlight=False)
    x = info["xnnpack"]
    outside = ", ".join(f"{n}×{c}" for n, c in x["outside"].items()) or "none"
    console.print(f"XNNPACK (LiteRT CPU): {'takes the whole graph' if x['fully_delegated'] else '[yellow]partial[/]'}"
                  f" · {x['partitions']} partition(s) · left outside: {outside}")


@app.command()
@friendly_errors
def bench(
    artifact_dirs: Optional[list[Path]] = typer.Argument(None, help="Artifact dirs from `payattn export`; default: ARTIFACTS/TASK/MECHANISM."),
    mechanism: str = typer.Option("all", "--mechanism", "-m", metavar=MECH_METAVAR, help=MECHANISM_HELP + " Used when no dir is given."),
    task: str = typer.Option("mnist-5k", help="Task whose artifacts to bench when no dir is given."),
    artifacts: Path = typer.Option(Path("artifacts"), help="Root of the artifact dirs when no dir is given."),
    runtime: str = typer.Option(",".join(RUNTIMES), metavar=RUNTIME_METAVAR, help=RUNTIME_HELP),
    precision: str = typer.Option("fp32", metavar=PRECISION_METAVAR, help=PRECISION_HELP),
    threads: str = typer.Option(",".join(map(str, DEFAULT_BENCH.threads)), help=describe("threads")),
    runs: int = typer.Option(DEFAULT_BENCH.runs, help=describe("runs")),
    warmup: int = typer.Option(DEFAULT_BENCH.warmup_runs, help=describe("warmup_runs")),
    min_seconds: float = typer.Option(DEFAULT_BENCH.min_seconds, help=describe("min_seconds")),
    warmup_seconds: float = typer.Option(DEFAULT_BENCH.warmup_seconds, help=describe("warmup_seconds")),
    timeout: float = typer.Option(DEFAULT_BENCH.timeout_seconds, help=describe("timeout_seconds")),
    results: Path = typer.Option(Path("results.jsonl"), help="Results file; lines are appended."),
    device: str = typer.Option("local", help="Comma list of devices: local and names from `payattn devices list`."),
    devices_file: Optional[Path] = typer.Option(None, help="Device registry file (default: the user's config dir)."),
    xnnpack: Optional[bool] = typer.Option(None, "--xnnpack/--no-xnnpack", help="Android only: benchmark_model's --use_xnnpack (default: its own)."),
    verify_first: bool = typer.Option(False, "--verify", help="First check each device's outputs against PyTorch's (as `payattn verify`); bench only if all pass."),
    profile: bool = typer.Option(False, "--profile", help="After the timed runs, record each artifact's time per operator (ONNX Runtime's profiler; Android's benchmark_model op profiling; LiteRT's Python API has none)."),
) -> None:
    """Measure per-inference latency of exported artifacts on one or more devices, interleaved,
    appending one JSON line per measurement to the results file. Several devices: this machine
    first and alone, then the others at once."""
    from payattn.bench import build_job
    from payattn.devices import AdbSettings, run_on_devices

    settings = BenchSettings(threads=parse_threads(threads), runs=runs, warmup_runs=warmup,
                             min_seconds=min_seconds, warmup_seconds=warmup_seconds,
                             timeout_seconds=timeout, profile=profile)
    dirs = list(artifact_dirs or default_artifact_dirs(artifacts, task, expand_mechanisms(mechanism)))
    devices = split_list(device, "--device")
    job = build_job(dirs, split_list(runtime, "--runtime"), parse_precisions(precision), settings)
    if verify_first:
        run_verify(job, devices, devices_file)
    console.print(f"{len(job['artifacts'])} artifact(s) × {len(settings.threads)} thread setting(s) "
                  f"on {', '.join(devices)} → {results}", markup=False)
    measured, failures = run_on_devices(
        devices, job, results, devices_file=devices_file, adb=AdbSettings(use_xnnpack=xnnpack),
        log=lambda msg: err_console.print(msg, style="dim", highlight=False, markup=False, soft_wrap=True),
        on_result=lambda r: console.print(result_row(r), highlight=False, markup=False),
    )
    report_failures(failures, len(measured), results)
    console.print(f"results appended to {results}; next: payattn report {results}", markup=False)


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


def run_verify(job: dict[str, Any], devices: list[str], devices_file: Optional[Path]) -> list[dict[str, Any]]:
    """Check the job's artifacts on every device against PyTorch's stored outputs and print a
    table. Exits 1 if an artifact misses its tolerance or a device failed, after all have run."""
    from payattn.devices import verify_on_devices

    lines, failures = verify_on_devices(
        devices, job, devices_file=devices_file,
        log=lambda msg: err_console.print(msg, style="dim", highlight=False, markup=False))
    table = Table(title=f"parity with PyTorch on {', '.join(devices)}")
    for col in ("device", "mechanism", "artifact", "runtime", "max |Δ| (limit)", "at export",
                "top-1 agree (floor)", "result"):
        table.add_column(col, justify="left" if col in ("device", "mechanism", "artifact", "runtime") else "right")
    for line in lines:
        table.add_row(*parity_row(line))
    table_console().print(table)
    for line in lines:
        for problem in line["problems"]:
            print_error(f"parity on {line['device']['name']}: {problem}")
    for failure in failures:
        print_error(failure.message)
    if failures or not all(line["passed"] for line in lines):
        raise typer.Exit(1)
    return lines


@app.command("verify")
@friendly_errors
def verify_command(
    artifact_dirs: list[Path] = typer.Argument(..., help="Artifact dirs from `payattn export`; they carry PyTorch's reference outputs."),
    device: str = typer.Option("local", help="Comma list of devices: local and names from `payattn devices list`."),
    runtime: str = typer.Option(",".join(RUNTIMES), metavar=RUNTIME_METAVAR, help=RUNTIME_HELP),
    precision: str = typer.Option("all", metavar=PRECISION_METAVAR, help=PRECISION_HELP + " Those the dirs lack are skipped."),
    timeout: float = typer.Option(DEFAULT_BENCH.timeout_seconds, help=describe("timeout_seconds")),
    devices_file: Optional[Path] = typer.Option(None, help="Device registry file (default: the user's config dir)."),
) -> None:
    """Run each artifact on the reference inputs stored at export, on the device(s), and compare
    the outputs with PyTorch's under the export's tolerances. Not available on Android."""
    from payattn.bench import build_job
    from payattn.runtime.artifacts import load_manifest

    have = {e["precision"] for d in artifact_dirs for e in load_manifest(Path(d) / "manifest.json")["artifacts"]}
    precisions = [p for p in parse_precisions(precision) if p in have] or parse_precisions(precision)
    job = build_job(artifact_dirs, split_list(runtime, "--runtime"), precisions,
                    BenchSettings(timeout_seconds=timeout))
    run_verify(job, split_list(device, "--device"), devices_file)


def table_console() -> Console:
    """Where tables go: the terminal, or for piped output (a log, CI) a console as wide as any
    table, so no table is cut at 80 columns or truncated with "…"."""
    return console if console.is_terminal else Console(width=PIPED_WIDTH)


def print_headlines(results: Any) -> None:
    """The report's Table 5-style headline tables, in the terminal."""
    from payattn.report import headline_tables

    print_tables(headline_tables(results))


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


@app.command()
@friendly_errors
def report(
    results: Optional[Path] = typer.Argument(None, help="A results.jsonl written by `payattn bench`; default: results.jsonl, or none with --sweep."),
    out: Optional[Path] = typer.Option(None, help="Report folder; default: report/ beside RESULTS (or beside the first sweep)."),
    sweep: Optional[list[Path]] = typer.Option(None, help="A folder from `payattn sweep` (repeatable): accuracy over seeds, the paper's claims, Pareto per device."),
) -> None:
    """Write report.md, report.csv, a self-contained report.html and PNG plots from a results file
    and/or sweep folders."""
    from payattn.report import report as write_report

    if results is None and not sweep:
        results = Path("results.jsonl")
    paths = write_report(results, out or (results.parent if results else sweep[0]) / "report", sweeps=sweep or [])
    if results is not None:
        print_headlines(results)
    console.print(f"report: {paths.md}\n        {paths.html}\n        {paths.csv}", markup=False)


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("demo-out"), help="Everything is written here: runs/, artifacts/, results.jsonl, report/."),
    text: bool = typer.Option(False, "--text", help="Also run the movie-reviews text task."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs; default: each task's."),
    precision: str = typer.Option("fp32,fp16,dynamic-int8,int8", metavar=PRECISION_METAVAR, help=PRECISION_HELP + " Exported and benched."),
    runs: int = typer.Option(DEFAULT_BENCH.runs, help=describe("runs")),
    min_seconds: float = typer.Option(DEFAULT_BENCH.min_seconds, help=describe("min_seconds")),
    force: bool = typer.Option(False, "--force", help="Replace payattn's own outputs in an existing OUT (runs/, artifacts/, results.jsonl, report/); nothing else there is touched."),
) -> None:
    """The whole pipeline on the embedded data: train all four mechanisms, export, verify,
    bench on this machine with ONNX Runtime and LiteRT, and write the report."""
    from payattn.pipeline import run_demo

    settings = BenchSettings(runs=runs, min_seconds=min_seconds)
    with progress_bar() as bar:
        outcome = run_demo(out, text=text, epochs=epochs, precisions=precision, settings=settings,
                           force=force, hooks=bar_hooks(bar))
    print_headlines(outcome.results)
    console.print(f"demo finished in {outcome.seconds:.0f} s\n"
                  f"report: {outcome.report.md}\n        {outcome.report.html}", markup=False)
    report_failures(outcome.failures, outcome.measured, outcome.results)


devices_app = typer.Typer(help="The device registry: this machine, SSH boards, ADB phones.",
                          no_args_is_help=True)
app.add_typer(devices_app, name="devices")
DEVICES_FILE_HELP = "Device registry file (default: $XDG_CONFIG_HOME/payattn/devices.toml)."


@devices_app.command("add")
@friendly_errors
def devices_add(
    name: str = typer.Argument(..., help="A short name: lower-case letters, digits, - and _."),
    ssh: Optional[str] = typer.Option(None, help="USER@HOST[:PORT] of a Linux board (Raspberry Pi)."),
    identity: Optional[Path] = typer.Option(None, help="SSH private key (default: your ssh config's)."),
    known_hosts: Optional[Path] = typer.Option(None, help="Host-key file to trust for this board instead of ~/.ssh/known_hosts (the emulated Pi prints one)."),
    python: Optional[str] = typer.Option(None, help="Python on the board (default: python3)."),
    adb: Optional[str] = typer.Option(None, help="Serial of an Android device (`adb devices`)."),
    benchmark_model: Optional[Path] = typer.Option(None, help="TFLite's benchmark_model binary for the phone's ABI."),
    cpu_mask: Optional[str] = typer.Option(None, help="Hex CPU mask for taskset on the phone, e.g. f0 for big cores."),
    devices_file: Optional[Path] = typer.Option(None, help=DEVICES_FILE_HELP),
) -> None:
    """Register an SSH board (--ssh) or an Android phone (--adb with --benchmark-model)."""
    from payattn.devices import add_adb_device, add_ssh_device

    if (ssh is None) == (adb is None):
        raise PayattnError("give exactly one of --ssh USER@HOST[:PORT] or --adb SERIAL")
    if ssh is not None:
        if benchmark_model or cpu_mask:
            raise PayattnError("--benchmark-model and --cpu-mask are for --adb devices")
        spec = add_ssh_device(name, ssh, identity=str(identity) if identity else None,
                              known_hosts=str(known_hosts) if known_hosts else None,
                              python=python, path=devices_file)
    else:
        if identity or known_hosts or python:
            raise PayattnError("--identity, --known-hosts and --python are for --ssh devices")
        if benchmark_model is None:
            raise PayattnError("an --adb device needs --benchmark-model PATH (TFLite's benchmark_model binary)")
        spec = add_adb_device(name, adb, benchmark_model=str(benchmark_model), cpu_mask=cpu_mask,
                              path=devices_file)
    console.print(f"added {spec.name} ({spec.kind}, {spec.target}); check it with "
                  f"`payattn devices check {spec.name}`")


@devices_app.command("list")
@friendly_errors
def devices_list(devices_file: Optional[Path] = typer.Option(None, help=DEVICES_FILE_HELP)) -> None:
    """List the registered devices (local is always there)."""
    from payattn.devices import list_devices

    table = Table()
    for col in ("name", "kind", "target"):
        table.add_column(col)
    for spec in list_devices(devices_file):
        table.add_row(spec.name, spec.kind, spec.target)
    table_console().print(table)


@devices_app.command("remove")
@friendly_errors
def devices_remove(
    name: str = typer.Argument(..., help="The device to forget."),
    devices_file: Optional[Path] = typer.Option(None, help=DEVICES_FILE_HELP),
) -> None:
    """Remove a device from the registry."""
    from payattn.devices import remove_device

    spec = remove_device(name, devices_file)
    console.print(f"removed {spec.name} ({spec.kind}, {spec.target})")


@devices_app.command("check")
@friendly_errors
def devices_check(
    name: str = typer.Argument("local", help="The device to probe."),
    devices_file: Optional[Path] = typer.Option(None, help=DEVICES_FILE_HELP),
) -> None:
    """Probe a device (architecture, CPU, cores, memory, OS, runtimes) and say what it lacks."""
    from payattn.devices import check_device

    check = check_device(name, devices_file=devices_file)
    console.print(check.describe(), highlight=False)
    if not check.ok:
        raise typer.Exit(1)


# `payattn --help` lists the commands in the order the pipeline runs them, wherever they are defined.
PIPELINE_ORDER = ("info", "tasks", "train", "sweep", "export", "inspect", "verify", "bench", "report", "demo")
app.registered_commands.sort(key=lambda c: PIPELINE_ORDER.index(c.name or c.callback.__name__)
                             if (c.name or c.callback.__name__) in PIPELINE_ORDER else len(PIPELINE_ORDER))
