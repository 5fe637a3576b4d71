"""The command line's options, declared once, and its parsers and error policy.

Every option that several commands take is one `Annotated` type here, so it has one name, one
meaning and one help text everywhere. The model-shape options come from the table in
`payattn.config` (SHAPE_SETTINGS) through `shape_options`, and the bench options from
`payattn.runtime.settings`.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from inspect import Parameter, getdoc, signature
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import click
import typer
from typer.core import TyperGroup

from payattn import config
from payattn.config import ShapeSetting
from payattn.errors import PayattnError
from payattn.mechanisms import ALIASES, MECHANISMS
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import PRECISIONS, ROADS, RUNTIMES
from payattn.runtime.settings import BenchSettings, describe
from payattn.sweep import MAX_WORKERS
from payattn.views import print_error

DEFAULT_BENCH = BenchSettings()
# The demo measures 44 files and more: half of bench's time on each keeps it within minutes.
DEMO_BENCH = BenchSettings(min_seconds=0.5, warmup_seconds=0.25)
DEMO_WARMUP = DEMO_BENCH.warmup_seconds
MECHANISM_HELP = (f"One of {', '.join(MECHANISMS)} (alias {', '.join(ALIASES)}), a comma list, "
                  "or all.")
PRECISION_HELP = f"Comma list of {', '.join(PRECISIONS)}, or all."
SEEDS_HELP = "A count (5 = seeds 0–4), a range (3-7) or a list (0,4,9)."
MAX_ARGUMENT = 4096  # characters in one command-line argument: PATH_MAX, longer than any value


def metavar(names: tuple[str, ...]) -> str:
    return "[" + "|".join(names) + "]"


def mechanism_option(extra: str = "") -> Any:
    return typer.Option("--mechanism", "-m", metavar=metavar((*MECHANISMS, "all")),
                        help=f"{MECHANISM_HELP} {extra}".strip())


def precision_option(extra: str = "") -> Any:
    return typer.Option(metavar=metavar((*PRECISIONS, "all")), help=f"{PRECISION_HELP} {extra}".strip())


def bench_option(setting: str) -> Any:
    """An option of payattn.runtime.settings.BenchSettings, with its declared help."""
    return typer.Option(help=describe(setting))


Mechanisms = Annotated[str, mechanism_option()]
Precisions = Annotated[str, precision_option()]
Converters = Annotated[str, typer.Option(
    "--converter", metavar=metavar((*ROADS, "all")),
    help=f"The road(s) to TFLite/ExecuTorch: comma list of {', '.join(ROADS)}, or all (every road "
         "this payattn has); model.onnx is always written.")]
Runtimes = Annotated[str, typer.Option(metavar=metavar(RUNTIMES),
                                       help=f"Comma list of {', '.join(RUNTIMES)}.")]
Task = Annotated[str, typer.Option(help="mnist-5k, movie-reviews, amazon-reviews (embedded) or "
                                        "mnist, cifar100, imdb, amazon (need --data-dir).")]
Preset = Annotated[Optional[str], typer.Option(help="Model preset; default: the task's.")]
Epochs = Annotated[Optional[int], typer.Option(help="Training epochs; default: the task's.")]
DataDir = Annotated[Optional[Path], typer.Option(
    help="Folder with the full dataset's official files (MNIST IDX .gz, cifar-100-python.tar.gz, "
         "aclImdb_v1.tar.gz or aclImdb/, Amazon train.csv/test.csv).")]
Seeds = Annotated[str, typer.Option(help=SEEDS_HELP)]
Device = Annotated[str, typer.Option(help="Comma list of devices: local and names from "
                                          "`payattn devices list`.")]
DevicesFile = Annotated[Optional[Path], typer.Option(
    help="Device registry file (default: $XDG_CONFIG_HOME/payattn/devices.toml).")]
Timeout = Annotated[float, bench_option("timeout_seconds")]
Runs = Annotated[int, bench_option("runs")]
MinSeconds = Annotated[float, bench_option("min_seconds")]


def shape_option(setting: ShapeSetting, several: bool) -> Parameter:
    """The command-line option of one model-shape setting: one value, or a sweep's comma list."""
    bounds = f"{setting.low:,}–{setting.high:,}"
    if setting.kind is bool:
        option = typer.Option(f"{setting.flag}/--no-{setting.flag[2:]}",
                              help=setting.help[0].upper() + setting.help[1:] + ".")
        kind: Any = Optional[bool]
    elif several:
        option = typer.Option(help=f"Values of {setting.help}, {bounds}: a comma list, each value "
                                   "a point; default: the preset's.")
        kind = Optional[str]
    else:
        option = typer.Option(help=f"Override {setting.help}, {bounds}.")
        kind = Optional[int]
    return Parameter(setting.name, Parameter.KEYWORD_ONLY, default=None,
                     annotation=Annotated[kind, option])


def shape_options(several: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per model-shape setting (payattn.config.SHAPE_SETTINGS, read
    when the command is defined); the command gets them together as `shape` (name -> value,
    None = the preset's). With `several`, the settings a sweep takes, each as a comma list."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        settings = [s for s in config.SHAPE_SETTINGS if s.sweeps or not several]
        own = signature(command, eval_str=True)

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            shape = {s.name: kwargs.pop(s.name, None) for s in settings}
            return command(*args, shape=shape, **kwargs)

        kept = [p for p in own.parameters.values() if p.name != "shape"]
        added = [shape_option(s, several) for s in settings]
        wrapper.__signature__ = own.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
        return wrapper

    return decorate


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


class OneLineErrors(TyperGroup):
    """A usage error (a bad value, a missing option) is one line naming it and where to look,
    like every other payattn error, instead of a usage block and a boxed panel."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        hide_flag_types(self)
        argv = kwargs.get("args", args[0] if args else None)
        too_long = overlong_argument(list(sys.argv[1:] if argv is None else argv))
        previous = {sig: signal.signal(sig, _on_signal) for sig in signals_to_catch()}
        _caught.clear()
        try:
            if too_long:
                print_error(too_long)
                code = 2
            else:
                code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            _caught.append(signal.SIGINT)
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
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if _caught:  # typer turns the interrupt into a silent exit 130: say what ended the run
            terminated = _caught[0] == signal.SIGTERM
            print_error("terminated (SIGTERM)" if terminated else "interrupted")
            code = 143 if terminated else 130
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


_caught: list[int] = []  # the signal that ended this run, if one did


def _on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM and Ctrl-C alike raise KeyboardInterrupt where the program is, so a SIGTERM
    unwinds as Ctrl-C does: every wait ends, every child process started is stopped, nothing
    half-written is kept; the signal is noted for the one closing line."""
    _caught.append(signum)
    raise KeyboardInterrupt


def signals_to_catch() -> list[int]:
    """SIGTERM and SIGINT where they still have Python's default action (a signal the caller
    chose to ignore, as a shell does for a background job, stays ignored); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return []
    defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
    return [sig for sig, default in defaults.items() if signal.getsignal(sig) is default]


def overlong_argument(argv: list[str]) -> str | None:
    """The error for an argument over MAX_ARGUMENT characters, checked before any parsing (a
    value's own, shorter bound is checked where it is read), or None."""
    for index, arg in enumerate(argv):
        if len(arg) > MAX_ARGUMENT:
            name = arg.split("=", 1)[0] if arg.startswith("--") and "=" in arg else (
                argv[index - 1] if index and argv[index - 1].startswith("-") else "an argument")
            return (f"{name}: a value of {len(arg):,} characters is over payattn's bound of "
                    f"{MAX_ARGUMENT:,} per argument (a path's limit); shorten it")
    return None


def within(low: int, high: int, hint: str = "") -> Callable[[Optional[int]], Optional[int]]:
    """A typer callback refusing an integer option outside low..high, with the bound."""

    def check(value: Optional[int]) -> Optional[int]:
        if value is not None and not low <= value <= high:
            raise typer.BadParameter(f"must be a whole number from {low:,} to {high:,}, got {value}{hint}")
        return value

    return check


def hide_flag_types(command: Any) -> None:
    """An on/off flag takes no value, so its help shows no `<bool>` type (--help included)."""
    help_option = command.get_help_option(click.Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        hide_flag_types(sub)


def split_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise PayattnError(f"{option} needs at least one value")
    return items


def adb_settings(xnnpack: Optional[bool], accelerator: str, gpu_fp16: bool, offline: bool,
                 benchmark_url: Optional[str], ca_file: Optional[Path]) -> Any:
    """The phones' settings from bench's Android options, with a bar for a first download."""
    from payattn.devices import AdbSettings
    from payattn.devices.prebuilt import FetchSettings
    from payattn.views import download_bar

    accelerators = tuple(dict.fromkeys(split_list(accelerator, "--accelerator")))
    unknown = [a for a in accelerators if a not in ("cpu", "gpu")]
    if unknown:
        raise PayattnError(f"unknown accelerator {unknown[0]!r}: --accelerator takes cpu, gpu or cpu,gpu")
    if ca_file is not None and not ca_file.is_file():
        raise PayattnError(f"--ca-file {ca_file} does not exist; pass a PEM file of certificates")
    fetch = FetchSettings(base_url=benchmark_url, ca_file=ca_file, offline=offline, progress=download_bar())
    return AdbSettings(use_xnnpack=xnnpack, accelerators=accelerators, gpu_precision_loss=gpu_fp16, fetch=fetch)


def parse_ints(value: str, option: str) -> list[int]:
    try:
        return [int(v) for v in split_list(value, option)]
    except ValueError:
        raise PayattnError(f"{option} takes whole numbers separated by commas, got {value!r}") from None


# ---- options of one command, declared here so cli.py reads as the list of commands ---------

Checkpoints = Annotated[Optional[list[Path]], typer.Option(
    "--checkpoint", help="Run dir(s) from `payattn train`; without it the task's default model is "
                         "trained first (or reused from --runs-dir when it is exactly that model).")]
RunsDir = Annotated[Path, typer.Option(help="Where models trained first are kept "
                                            "(RUNS_DIR/TASK/MECHANISM).")]
SweepDir = Annotated[Optional[Path], typer.Option(
    "--sweep", help="A folder from `payattn sweep`: export its finished points to "
                    "SWEEP/artifacts/VARIANT/seed-N.")]
ArtifactDirs = Annotated[Optional[list[Path]], typer.Argument(
    help="Artifact dirs from `payattn export`; default: ARTIFACTS/TASK/MECHANISM.")]
ArtifactsRoot = Annotated[Path, typer.Option("--artifacts",
                                             help="Root of the artifact dirs when no dir is given.")]
Threads = Annotated[str, bench_option("threads")]
Warmup = Annotated[int, typer.Option("--warmup", help=describe("warmup_runs"))]
WarmupSeconds = Annotated[float, bench_option("warmup_seconds")]
Results = Annotated[Path, typer.Option(help="Results file; lines are appended.")]
Xnnpack = Annotated[Optional[bool], typer.Option(
    "--xnnpack/--no-xnnpack", help="Android only: benchmark_model's --use_xnnpack (default: its own).")]
Accelerators = Annotated[str, typer.Option(
    "--accelerator", help="Android only: comma list of cpu (XNNPACK) and gpu (benchmark_model's "
                          "GPU delegate); each is its own result line.")]
GpuFp16 = Annotated[bool, typer.Option(
    "--gpu-fp16", help="Android GPU runs may compute in fp16 (--gpu_precision_loss_allowed); "
                       "off by default, so GPU and CPU lines compare the same precision.")]
Offline = Annotated[bool, typer.Option(
    "--offline", help="Never download LiteRT's benchmark_model for a phone; say what to put where.")]
BenchmarkUrl = Annotated[Optional[str], typer.Option(
    "--benchmark-url", envvar="PAYATTN_LITERT_BINARIES_URL",
    help="Base URL of LiteRT's prebuilt binaries (https only; default: Google's, as the LiteRT "
         "CLI uses); VERSION/android_arm64/benchmark_model is fetched below it.")]
CaFile = Annotated[Optional[Path], typer.Option(
    "--ca-file", help="PEM file of certificates to trust for --benchmark-url (a private mirror).")]
VerifyFirst = Annotated[bool, typer.Option(
    "--verify", help="First check each device's outputs against PyTorch's (as `payattn verify`); "
                     "bench only if all pass.")]
Profile = Annotated[bool, typer.Option(
    "--profile", help="After the timed runs, record each artifact's time per operator (ONNX "
                      "Runtime's profiler; Android's benchmark_model op profiling; LiteRT's "
                      "Python API has none).")]
Ssh = Annotated[Optional[str], typer.Option(help="USER@HOST[:PORT] of a Linux board (Raspberry Pi).")]
Identity = Annotated[Optional[Path], typer.Option(help="SSH private key (default: your ssh config's).")]
KnownHosts = Annotated[Optional[Path], typer.Option(
    help="Host-key file to trust for this board instead of ~/.ssh/known_hosts (the emulated Pi "
         "prints one).")]
Python = Annotated[Optional[str], typer.Option(help="Python on the board (default: python3).")]
Adb = Annotated[Optional[str], typer.Option(help="Serial of an Android device (`adb devices`).")]
BenchmarkModel = Annotated[Optional[Path], typer.Option(
    help="A benchmark_model binary for the phone's ABI; default: LiteRT's prebuilt (arm64 only), "
         "fetched on the first bench.")]
CpuMask = Annotated[Optional[str], typer.Option(help="Hex CPU mask for taskset on the phone, e.g. f0 "
                                                     "for big cores.")]
Seed = Annotated[int, typer.Option(help="Seed for weights and batch order (same seed, same model).")]
TrainOut = Annotated[Path, typer.Option("--out", help="Run dirs are written to OUT/TASK/MECHANISM.")]
TrainThreads = Annotated[int, typer.Option(
    "--threads", help="Torch threads for training (1–256); 1 is fastest for these small models on "
                      "a busy machine.")]
TrainForce = Annotated[bool, typer.Option(
    "--force", help="Replace existing run dirs (only payattn's own: model.pt, config.json, "
                    "metrics.json, tokenizer.json).")]
SweepPresets = Annotated[Optional[str], typer.Option(
    "--preset", help="Comma list of presets to sweep; default: the task's.")]
SweepOut = Annotated[Optional[Path], typer.Option(
    "--out", help="Sweep folder: runs/VARIANT/seed-N and sweep.json; default: sweeps/TASK.")]
Workers = Annotated[Optional[int], typer.Option(
    help=f"Local processes, one torch thread each, 1–{MAX_WORKERS}; default: the cores.",
    callback=within(1, MAX_WORKERS, "; leave it out to use one process per core"))]
Ray = Annotated[Optional[str], typer.Option(
    "--ray", help="Run the points as tasks on this Ray cluster (HOST:PORT, ray://…, or auto).")]
SweepForce = Annotated[bool, typer.Option("--force", help="Retrain points that are already finished.")]
ExportOut = Annotated[Path, typer.Option("--out", help="Artifact dirs are written to "
                                                       "OUT/TASK/MECHANISM.")]
ExportForce = Annotated[bool, typer.Option(
    "--force", help="Replace existing artifact dirs (only payattn's own files in them).")]
ExportSeeds = Annotated[Optional[str], typer.Option(
    "--seeds", help="With --sweep, the seeds to export (default: all). " + SEEDS_HELP)]
ResultsFile = Annotated[Optional[Path], typer.Argument(
    help="A results.jsonl written by `payattn bench`; default: results.jsonl, or none with --sweep.")]
ReportOut = Annotated[Optional[Path], typer.Option(
    "--out", help="Report folder; default: report/ beside RESULTS (or beside the first sweep).")]
ReportSweeps = Annotated[Optional[list[Path]], typer.Option(
    "--sweep", help="A folder from `payattn sweep` (repeatable): accuracy over seeds, the paper's "
                    "claims, Pareto per device.")]
DemoOut = Annotated[Path, typer.Option(
    "--out", help="Everything is written here: runs/, artifacts/, results.jsonl, report/.")]
DemoText = Annotated[bool, typer.Option("--text", help="Also run the movie-reviews text task.")]
DemoEpochs = Annotated[Optional[int], typer.Option(
    "--epochs", help="Training epochs; default: each task's.")]
Wait = Annotated[bool, typer.Option(
    "--wait", help="If another payattn process is writing the same output, wait for it to "
                   "finish instead of failing at once.")]
ReportForce = Annotated[bool, typer.Option(
    "--force", help="Replace an existing report in OUT (only one payattn wrote: report.md, "
                    "report.csv, report.html, plots/).")]
DemoForce = Annotated[bool, typer.Option(
    "--force", help="Replace payattn's own outputs in an existing OUT (runs/, artifacts/, "
                    "results.jsonl, report/); nothing else there is touched.")]
ExportMechanisms = Annotated[Optional[str], mechanism_option("Default: all, or the checkpoint's.")]
VerifyPrecisions = Annotated[str, precision_option("Those the dirs lack are skipped.")]
BenchMechanisms = Annotated[str, mechanism_option("Used when no dir is given.")]
BenchTask = Annotated[str, typer.Option("--task", help="Task whose artifacts to bench when no dir "
                                                       "is given.")]
DemoPrecisions = Annotated[str, precision_option("Exported and benched.")]
InfoPreset = Annotated[str, typer.Option("--preset", help="Model preset (see the list printed below).")]
TfliteFile = Annotated[Path, typer.Argument(
    help="A .tflite file, e.g. artifacts/mnist-5k/standard/model_fp32.tflite.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the same facts as one JSON object.")]
VerifyDirs = Annotated[list[Path], typer.Argument(
    help="Artifact dirs from `payattn export`; they carry PyTorch's reference outputs.")]


def in_pipeline_order(app: typer.Typer, devices: typer.Typer, order: tuple[str, ...]) -> None:
    """`payattn --help` lists the commands in pipeline order, each with its docstring as one
    paragraph (a docstring's line breaks are for the source, not the terminal)."""
    for typer_app in (app, devices):
        for command in typer_app.registered_commands:
            command.help = " ".join((getdoc(command.callback) or "").split())
    name = lambda c: c.name or c.callback.__name__  # noqa: E731
    app.registered_commands.sort(key=lambda c: order.index(name(c)) if name(c) in order else len(order))
