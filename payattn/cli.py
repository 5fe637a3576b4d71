"""The `payattn` command line: parses options, calls the library, hands the answer to the views.

Options are declared once in `payattn.options`, rendering lives in `payattn.views`. Each command
imports what it needs when it runs, so `--help` and the commands that read files stay light."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

try:
    import typer
except ModuleNotFoundError:  # `pip install payattn` alone is numpy only (what a device needs)
    raise SystemExit("the payattn command needs its command-line packages: "
                     "pip install 'payattn[cli]'") from None

from payattn import __version__
from payattn import options as opt
from payattn.mechanisms import MECHANISMS, expand_mechanisms, parse_precisions
from payattn.runtime.formats import RUNTIMES
from payattn.runtime.settings import BenchSettings
from payattn.views import console, log, print_failures, say, table_console

app = typer.Typer(
    cls=opt.OneLineErrors,
    help="Standard, optimised, efficient and super attention: train, export to ONNX and "
    "builtin-only TFLite, benchmark on this machine, a Raspberry Pi or an Android phone. "
    "The commands below are in pipeline order.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def show_version(value: bool) -> None:
    if value:
        say(f"payattn {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Standard, optimised, efficient and super attention, from PyTorch to the edge."""


@app.command()
@opt.friendly_errors
@opt.shape_options()
def info(
    preset: opt.InfoPreset = "mnist-tiny",
    shape: Optional[dict[str, Any]] = None,
) -> None:
    """Parameters and FLOPs of each mechanism for a preset, side by side, with ratios to
    standard."""
    from payattn.config import PRESETS, get_preset, resolve_config
    from payattn.cost import model_cost
    from payattn.views import cost_table

    shape = dict(shape or {})
    vocab = shape.pop("max_vocab", None)  # the tokenizer keeps at most this many tokens
    configs = [resolve_config(get_preset(preset), m, vocab_size=vocab, **shape) for m in MECHANISMS]
    table_console().print(cost_table(preset, configs, [model_cost(c) for c in configs]))
    say("(×) is the ratio to standard. FLOPs per input: multiply-add = 2; softmax, norms and "
        f"biases ignored. Presets: {', '.join(PRESETS)}.")


@app.command()
def tasks() -> None:
    """List the tasks: the embedded ones and the full datasets read from --data-dir."""
    from payattn.data import TASKS
    from payattn.views import tasks_table

    table_console().print(tasks_table(list(TASKS.values())))


@app.command()
@opt.friendly_errors
@opt.shape_options()
def train(
    mechanism: opt.Mechanisms = "all",
    task: opt.Task = "mnist-5k",
    preset: opt.Preset = None,
    epochs: opt.Epochs = None,
    seed: opt.Seed = 0,
    out: opt.TrainOut = Path("runs"),
    data_dir: opt.DataDir = None,
    threads: opt.TrainThreads = 1,
    force: opt.TrainForce = False,
    wait: opt.Wait = False,
    shape: Optional[dict[str, Any]] = None,
) -> None:
    """Train one or all mechanisms on a task and write run dirs (model.pt, config.json,
    metrics.json)."""
    from payattn.pipeline import train_many
    from payattn.views import bar_hooks, progress_bar, training_summary

    with progress_bar() as bar:
        rows = train_many(task, expand_mechanisms(mechanism), out, preset=preset, epochs=epochs,
                          seed=seed, data_dir=data_dir, shape=shape, threads=threads, force=force,
                          wait=wait, hooks=bar_hooks(bar))
    table_console().print(training_summary(task, rows))


@app.command()
@opt.friendly_errors
@opt.shape_options(several=True)
def sweep(
    mechanism: opt.Mechanisms = "all",
    seeds: opt.Seeds = "5",
    task: opt.Task = "mnist-5k",
    preset: opt.SweepPresets = None,
    epochs: opt.Epochs = None,
    data_dir: opt.DataDir = None,
    out: opt.SweepOut = None,
    workers: opt.Workers = None,
    ray: opt.Ray = None,
    force: opt.SweepForce = False,
    wait: opt.Wait = False,
    shape: Optional[dict[str, Any]] = None,
) -> None:
    """Train mechanisms × seeds × presets × shape options; each point is a run dir. Finished
    points are skipped, so an interrupted sweep resumes; a failing point is reported and the
    rest go on."""
    from payattn.sweep import make_spec, parse_seeds, run_sweep
    from payattn.views import print_sweep_outcome, progress_bar, sweep_progress
    from payattn.workers import usable_cores

    options = {name: opt.parse_ints(value, "--" + name.replace("_", "-"))
               for name, value in (shape or {}).items() if value}
    spec = make_spec(task, expand_mechanisms(mechanism), parse_seeds(seeds),
                     presets=opt.split_list(preset, "--preset") if preset else None,
                     options=options, epochs=epochs, data_dir=data_dir)
    folder = out or Path("sweeps") / task
    where = f"Ray cluster {ray}" if ray else f"{workers or usable_cores()} local process(es)"
    say(f"sweep {task}: {len(spec.points())} points on {where} → {folder}")
    started = time.perf_counter()
    with progress_bar() as bar:
        on_status, on_result = sweep_progress(bar, len(spec.points()))
        results = run_sweep(spec, folder, workers=workers, ray_address=ray, force=force,
                            on_status=on_status, on_result=on_result, wait=wait)
    say(f"sweep finished in {time.perf_counter() - started:.0f} s; index: {folder / 'sweep.json'}")
    if not print_sweep_outcome(folder, results):
        raise typer.Exit(1)


@app.command()
@opt.friendly_errors
@opt.shape_options()
def export(
    mechanism: opt.ExportMechanisms = None,
    checkpoint: opt.Checkpoints = None,
    task: opt.Task = "mnist-5k",
    preset: opt.Preset = None,
    epochs: opt.Epochs = None,
    data_dir: opt.DataDir = None,
    precision: opt.Precisions = "fp32,fp16,dynamic-int8",
    converter: opt.Converters = "onnx2tf",
    out: opt.ExportOut = Path("artifacts"),
    runs_dir: opt.RunsDir = Path("runs"),
    force: opt.ExportForce = False,
    sweep: opt.SweepDir = None,
    seeds: opt.ExportSeeds = None,
    wait: opt.Wait = False,
    shape: Optional[dict[str, Any]] = None,
) -> None:
    """Export trained models to ONNX and by each road (--converter), verified against PyTorch,
    with a manifest. Without --checkpoint the model is trained first as the options say."""
    from payattn.pipeline import export_pipeline, export_sweep
    from payattn.sweep import parse_seeds
    from payattn.views import bar_hooks, print_export, progress_bar

    with progress_bar() as bar:
        if sweep:
            jobs, manifests = export_sweep(
                sweep, precision, converters=converter, seeds=parse_seeds(seeds) if seeds else None,
                mechanisms=expand_mechanisms(mechanism) if mechanism else None, force=force,
                data_dir=data_dir, wait=wait, hooks=bar_hooks(bar))
        else:
            jobs, manifests = export_pipeline(
                checkpoints=checkpoint, mechanism=mechanism, task=task, preset=preset,
                epochs=epochs, data_dir=data_dir, precisions=precision, converters=converter,
                out=out, runs_dir=runs_dir, force=force, shape=shape, wait=wait,
                hooks=bar_hooks(bar))
    print_export(jobs, manifests)


@app.command()
@opt.friendly_errors
def inspect(
    artifact: opt.TfliteFile,
    as_json: opt.AsJson = False,
) -> None:
    """Show what an app runtime sees in a .tflite: signatures, tensors, metadata, operators, and
    whether LiteRT's CPU accelerator (XNNPACK) takes the whole graph."""
    import json

    from payattn.export.app import describe
    from payattn.views import print_inspection

    info = describe(artifact)
    if as_json:
        console.print_json(json.dumps(info))
    else:
        print_inspection(info)


def verify_on(job: dict[str, Any], devices: list[str], devices_file: Optional[Path]) -> None:
    """Check the job's artifacts on every device against PyTorch's stored outputs and print a
    table. Exits 1 if an artifact misses its tolerance or a device failed, after all have run."""
    from payattn.devices import verify_on_devices
    from payattn.views import print_parity

    lines, failures = verify_on_devices(devices, job, devices_file=devices_file, log=log)
    if not print_parity(lines, failures, devices):
        raise typer.Exit(1)


@app.command("verify")
@opt.friendly_errors
def verify_command(
    artifact_dirs: opt.VerifyDirs,
    device: opt.Device = "local",
    runtime: opt.Runtimes = ",".join(RUNTIMES),
    precision: opt.VerifyPrecisions = "all",
    timeout: opt.Timeout = opt.DEFAULT_BENCH.timeout_seconds,
    devices_file: opt.DevicesFile = None,
) -> None:
    """Run each artifact on the reference inputs stored at export, on the device(s), and compare
    the outputs with PyTorch's under the export's tolerances. Not available on Android."""
    from payattn.bench import build_job
    from payattn.pipeline import verify_precisions

    precisions = verify_precisions(artifact_dirs, precision)
    job = build_job(artifact_dirs, opt.split_list(runtime, "--runtime"), precisions,
                    BenchSettings(timeout_seconds=timeout))
    verify_on(job, opt.split_list(device, "--device"), devices_file)


@app.command()
@opt.friendly_errors
def bench(
    artifact_dirs: opt.ArtifactDirs = None,
    mechanism: opt.BenchMechanisms = "all",
    task: opt.BenchTask = "mnist-5k",
    artifacts: opt.ArtifactsRoot = Path("artifacts"),
    runtime: opt.Runtimes = ",".join(RUNTIMES),
    precision: opt.Precisions = "fp32",
    threads: opt.Threads = ",".join(map(str, opt.DEFAULT_BENCH.threads)),
    runs: opt.Runs = opt.DEFAULT_BENCH.runs,
    warmup: opt.Warmup = opt.DEFAULT_BENCH.warmup_runs,
    min_seconds: opt.MinSeconds = opt.DEFAULT_BENCH.min_seconds,
    warmup_seconds: opt.WarmupSeconds = opt.DEFAULT_BENCH.warmup_seconds,
    timeout: opt.Timeout = opt.DEFAULT_BENCH.timeout_seconds,
    results: opt.Results = Path("results.jsonl"),
    device: opt.Device = "local", devices_file: opt.DevicesFile = None,
    verify_first: opt.VerifyFirst = False, profile: opt.Profile = False,
    xnnpack: opt.Xnnpack = None, accelerator: opt.Accelerators = "cpu",
    gpu_fp16: opt.GpuFp16 = False, offline: opt.Offline = False,
    benchmark_url: opt.BenchmarkUrl = None, ca_file: opt.CaFile = None, wait: opt.Wait = False,
) -> None:
    """Measure per-inference latency of exported artifacts on one or more devices, interleaved,
    appending one JSON line per measurement to the results file. Several devices: this machine
    first and alone, then the others at once."""
    from payattn.bench import build_job
    from payattn.devices import run_on_devices
    from payattn.pipeline import default_artifact_dirs
    from payattn.views import print_result

    settings = BenchSettings(threads=tuple(opt.parse_ints(threads, "--threads")), runs=runs,
                             warmup_runs=warmup, min_seconds=min_seconds, profile=profile,
                             warmup_seconds=warmup_seconds, timeout_seconds=timeout)
    adb = opt.adb_settings(xnnpack, accelerator, gpu_fp16, offline, benchmark_url, ca_file)
    dirs = artifact_dirs or default_artifact_dirs(artifacts, task, expand_mechanisms(mechanism))
    devices, runtimes = opt.split_list(device, "--device"), opt.split_list(runtime, "--runtime")
    job = build_job(list(dirs), runtimes, parse_precisions(precision), settings)
    if verify_first:
        verify_on(job, devices, devices_file)
    say(f"{len(job['artifacts'])} artifact(s) × {len(settings.threads)} thread setting(s) "
        f"on {', '.join(devices)} → {results}")
    measured, failures = run_on_devices(devices, job, results, devices_file=devices_file,
                                        adb=adb, log=log, on_result=print_result, wait=wait)
    if not print_failures(failures, len(measured), results):
        raise typer.Exit(1)
    say(f"results appended to {results}; next: payattn report {results}")


@app.command()
@opt.friendly_errors
def report(
    results: opt.ResultsFile = None,
    out: opt.ReportOut = None,
    sweep: opt.ReportSweeps = None,
    force: opt.ReportForce = False,
    wait: opt.Wait = False,
) -> None:
    """Write report.md, report.csv, a self-contained report.html and PNG plots from a results
    file and/or sweep folders."""
    from payattn.report import report as write_report
    from payattn.views import print_report

    if results is None and not sweep:
        results = Path("results.jsonl")
    folder = out or (results.parent if results else sweep[0]) / "report"
    print_report(results, write_report(results, folder, sweeps=sweep or [], force=force, wait=wait))


@app.command()
@opt.friendly_errors
def demo(
    out: opt.DemoOut = Path("demo-out"),
    text: opt.DemoText = False,
    epochs: opt.DemoEpochs = None,
    precision: opt.DemoPrecisions = "fp32,fp16,dynamic-int8,int8",
    runs: opt.Runs = opt.DEMO_BENCH.runs,
    min_seconds: opt.MinSeconds = opt.DEMO_BENCH.min_seconds,
    force: opt.DemoForce = False,
) -> None:
    """The whole pipeline on the embedded data: train the four mechanisms, export them by every
    road, verify, bench every road on this machine, and write the report."""
    from payattn.pipeline import run_demo
    from payattn.views import bar_hooks, print_demo, progress_bar

    settings = BenchSettings(runs=runs, min_seconds=min_seconds, warmup_seconds=opt.DEMO_WARMUP)
    with progress_bar() as bar:
        outcome = run_demo(out, text=text, epochs=epochs, precisions=precision, settings=settings,
                           force=force, hooks=bar_hooks(bar))
    print_demo(outcome)
    if not print_failures(outcome.failures, outcome.measured, outcome.results):
        raise typer.Exit(1)


devices_app = typer.Typer(help="The device registry: this machine, SSH boards, ADB phones.",
                          no_args_is_help=True)
app.add_typer(devices_app, name="devices")


@devices_app.command("add")
@opt.friendly_errors
def devices_add(
    name: str = typer.Argument(..., help="A short name: lower-case letters, digits, - and _."),
    ssh: opt.Ssh = None,
    identity: opt.Identity = None,
    known_hosts: opt.KnownHosts = None,
    python: opt.Python = None,
    adb: opt.Adb = None,
    benchmark_model: opt.BenchmarkModel = None,
    cpu_mask: opt.CpuMask = None,
    devices_file: opt.DevicesFile = None,
) -> None:
    """Register an SSH board (--ssh) or an Android phone (--adb; arm64: no --benchmark-model)."""
    from payattn.devices import add_device

    spec = add_device(name, ssh=ssh, adb=adb, identity=identity, known_hosts=known_hosts,
                      python=python, benchmark_model=benchmark_model, cpu_mask=cpu_mask,
                      path=devices_file)
    say(f"added {spec.name} ({spec.kind}, {spec.target}); check it with "
        f"`payattn devices check {spec.name}`")


@devices_app.command("list")
@opt.friendly_errors
def devices_list(devices_file: opt.DevicesFile = None) -> None:
    """List the registered devices (local is always there)."""
    from payattn.devices import list_devices
    from payattn.views import devices_table

    table_console().print(devices_table(list_devices(devices_file)))


@devices_app.command("remove")
@opt.friendly_errors
def devices_remove(name: str = typer.Argument(..., help="The device to forget."),
                   devices_file: opt.DevicesFile = None) -> None:
    """Remove a device from the registry."""
    from payattn.devices import remove_device

    spec = remove_device(name, devices_file)
    say(f"removed {spec.name} ({spec.kind}, {spec.target})")


@devices_app.command("check")
@opt.friendly_errors
def devices_check(name: str = typer.Argument("local", help="The device to probe."),
                  devices_file: opt.DevicesFile = None) -> None:
    """Probe a device (architecture, CPU, cores, memory, OS, runtimes) and say what it lacks."""
    from payattn.devices import check_device

    check = check_device(name, devices_file=devices_file)
    say(check.describe())
    if not check.ok:
        raise typer.Exit(1)


opt.in_pipeline_order(app, devices_app, ("info", "tasks", "train", "sweep", "export", "inspect",
                                         "verify", "bench", "report", "demo"))
