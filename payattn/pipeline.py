"""The pipeline's composite steps: reuse-or-train, exporting several runs, and the demo.

The CLI only parses options and prints; what happens between the stages lives here, so a
script gets the same rules: a trained model is reused only when it is exactly the one asked
for, every target is checked before anything is trained or measured, and `--force` replaces
only what payattn wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from payattn.errors import PayattnError
from payattn.hooks import Hooks
from payattn.files import check_not_precious, check_writable
from payattn.locks import LOCK_NAME, lock_beside, lock_inside, locked
from payattn.mechanisms import MECHANISMS, expand_mechanisms, parse_precisions
from payattn.runtime.formats import RUNTIMES
from payattn.runtime.results import RESULT_PREFIX
from payattn.runtime.settings import BenchSettings

@dataclass
class ExportJob:
    run_dir: Path
    out_dir: Path
    trained: bool = False  # trained first by this command


def train_many(task: str, mechanisms: list[str], out: Path, *, preset: str | None,
               epochs: int | None, seed: int, data_dir: Path | None, shape: dict[str, Any] | None,
               threads: int, force: bool, wait: bool = False,
               hooks: Hooks = Hooks()) -> list[tuple[str, Path, dict[str, Any]]]:
    """`payattn train`: every option checked, each run dir locked and checked, the data loaded
    once, then each mechanism trained into OUT/TASK/MECHANISM. Returns (mechanism, run dir,
    metrics) rows."""
    from payattn.data import load_task
    from payattn.train import check_run_target, check_task_preset, check_train_options, default_epochs
    from payattn.train import train

    check_task_preset(task, preset)
    check_train_options(epochs=epochs if epochs is not None else default_epochs(task), seed=seed,
                        threads=threads, overrides=shape)
    for mech in mechanisms:  # before locking: a refusal here creates nothing
        check_run_target(out / task / mech, force)
    check_writable(out, "--out")
    with locked([(lock_beside(out / task / m), out / task / m) for m in mechanisms], wait=wait,
                log=hooks.log):
        for mech in mechanisms:  # again under the lock: another writer may have been first
            check_run_target(out / task / mech, force)
        dataset = load_task(task, data_dir)
        rows = []
        for mech in mechanisms:
            run_dir, label = out / task / mech, f"train {task}/{mech}"
            metrics = train(task, mech, run_dir, preset=preset, epochs=epochs, seed=seed,
                            data_dir=data_dir, overrides=shape, dataset=dataset, threads=threads,
                            force=force, progress=hooks.training(label))
            hooks.done(label, f"test accuracy {metrics['test_accuracy']:.2%}")
            rows.append((mech, run_dir, metrics))
    return rows


def wanted_config(task: str, mechanism: str, preset: str | None, epochs: int | None,
                  data_dir: Path | None, shape: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run dir trained by `export` with these options records: reuse needs all of it.
    `shape` holds the model-shape options given (None = the preset's value)."""
    from payattn.config import ModelConfig, resolve_config
    from payattn.data import TASKS
    from payattn.train import default_epochs

    if task not in TASKS:
        raise PayattnError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    preset = preset or TASKS[task].default_preset
    given = {k: v for k, v in (shape or {}).items() if v is not None}
    fields = set(ModelConfig.__dataclass_fields__)
    cfg = resolve_config(preset, mechanism, **{k: v for k, v in given.items() if k in fields})
    keys = ("d_model", "heads", "depth", "mlp_dim", "patch_size", "bias", *given)
    shape_keys = [k for k in dict.fromkeys(keys) if k in fields]
    return {"task": task, "mechanism": mechanism, "preset": preset, "seed": 0,
            "epochs": epochs if epochs is not None else default_epochs(task),
            "data_dir": str(Path(data_dir).absolute()) if data_dir is not None else None,
            "model": {k: getattr(cfg, k) for k in shape_keys}}


def reusable(run_dir: Path, wanted: dict[str, Any]) -> bool:
    """True when `run_dir` holds exactly the wanted model; False when there is none; an error
    naming the difference and the options to use when it holds another."""
    from payattn.train import read_run_config

    if not run_dir.exists():
        return False
    config = read_run_config(run_dir)
    if not (run_dir / "model.pt").is_file():
        raise PayattnError(f"{run_dir / 'model.pt'} is missing; retrain with `payattn train --force`")
    have = {**{k: config.get(k) for k in wanted if k != "model"},
            "model": {k: config["model"].get(k) for k in wanted["model"]}}
    diff = [f"{k}={have[k]!r} (asked {wanted[k]!r})" for k in wanted if k != "model" and have[k] != wanted[k]]
    diff += [f"{k}={have['model'][k]!r} (preset's {v!r})" for k, v in wanted["model"].items()
             if have["model"][k] != v]
    if diff:
        raise PayattnError(f"{run_dir} holds another model ({', '.join(diff)}); export it with "
                           f"--checkpoint {run_dir}, or give another --runs-dir to train anew")
    return True


def ensure_run(task: str, mechanism: str, runs_root: Path, *, preset: str | None = None,
               epochs: int | None = None, data_dir: Path | None = None,
               shape: dict[str, Any] | None = None, hooks: Hooks = Hooks()) -> tuple[Path, bool]:
    """The run dir RUNS/TASK/MECHANISM: reused when it holds exactly this model, trained with
    the task's defaults (and `shape`) when absent, refused otherwise. Returns (run dir, trained now)."""
    from payattn.train import train

    run_dir = Path(runs_root) / task / mechanism
    if reusable(run_dir, wanted_config(task, mechanism, preset, epochs, data_dir, shape)):
        hooks.log(f"using the trained model in {run_dir}")
        return run_dir, False
    label = f"train {task}/{mechanism}"
    metrics = train(task, mechanism, run_dir, preset=preset, epochs=epochs, data_dir=data_dir,
                    overrides=shape, progress=hooks.training(label))
    hooks.done(label, f"test accuracy {metrics['test_accuracy']:.2%}")
    return run_dir, True


def checkpoint_jobs(checkpoints: Iterable[Path], mechanism: str | None, out: Path) -> list[ExportJob]:
    """Export jobs for run dirs given with --checkpoint, their configs read and checked."""
    from payattn.train import read_run_config

    wanted = set(expand_mechanisms(mechanism)) if mechanism else None
    jobs = []
    for run_dir in checkpoints:
        config = read_run_config(run_dir)
        if wanted is not None and config["mechanism"] not in wanted:
            raise PayattnError(f"{run_dir} holds a {config['mechanism']} model, not {mechanism}; "
                               f"drop --mechanism or pass another --checkpoint")
        jobs.append(ExportJob(Path(run_dir), out / config["task"] / config["mechanism"]))
    return jobs


def export_all(jobs: list[ExportJob], precisions: Iterable[str], *, force: bool,
               data_dir: Path | None = None, converters: str | Iterable[str] = "onnx2tf",
               hooks: Hooks = Hooks()) -> list[Any]:
    """Export each job's run dir by the roads `converters` names; return the manifests."""
    from payattn.export import export

    manifests = []
    for job in jobs:
        label = f"export {job.out_dir.parent.name}/{job.out_dir.name}"
        manifest = export(job.run_dir, job.out_dir, list(precisions), force=force,
                          log=hooks.exporting(label), data_dir=data_dir, converters=converters)
        hooks.done(label, f"done in {manifest['export_seconds']:.0f} s")
        manifests.append(manifest)
    return manifests


def export_pipeline(*, checkpoints: list[Path] | None, mechanism: str | None, task: str,
                    preset: str | None, epochs: int | None, data_dir: Path | None,
                    precisions: str, out: Path, runs_dir: Path, force: bool,
                    shape: dict[str, Any] | None = None, converters: str = "onnx2tf",
                    wait: bool = False,
                    hooks: Hooks = Hooks()) -> tuple[list[ExportJob], list[Any]]:
    """`payattn export`: every target checked first, then locked (the artifact dirs and the
    run dirs it may train) and checked again, models trained (with the model-shape options in
    `shape`) or reused, then exported."""
    from payattn.export import check_export_target, choose_roads

    chosen = parse_precisions(precisions)  # a bad name fails before any training
    roads = choose_roads(converters)  # an unknown road fails before any training
    given = sorted(k for k, v in (shape or {}).items() if v is not None)
    if checkpoints and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise PayattnError(f"{flags} shape a model trained first; a --checkpoint is already trained: "
                           f"drop {flags} or --checkpoint")
    if checkpoints:
        jobs = checkpoint_jobs(checkpoints, mechanism, out)
    else:
        mechanisms = expand_mechanisms(mechanism or "all")
        jobs = [ExportJob(runs_dir / task / m, out / task / m) for m in mechanisms]
        for job in jobs:  # refuse a mismatched run before training any other
            reusable(job.run_dir, wanted_config(task, job.run_dir.name, preset, epochs, data_dir, shape))
    for job in jobs:
        check_export_target(job.out_dir, force)
    check_writable(out, "--out")
    if not checkpoints:
        check_writable(runs_dir, "--runs-dir")
    outputs = [job.out_dir for job in jobs] + ([] if checkpoints else [job.run_dir for job in jobs])
    with locked([(lock_beside(path), path) for path in outputs], wait=wait, log=hooks.log):
        for job in jobs:  # again under the lock: another writer may have been first
            check_export_target(job.out_dir, force)
        if not checkpoints:
            for job in jobs:
                job.run_dir, job.trained = ensure_run(task, job.run_dir.name, runs_dir,
                                                      preset=preset, epochs=epochs,
                                                      data_dir=data_dir, shape=shape, hooks=hooks)
        return jobs, export_all(jobs, chosen, force=force, data_dir=data_dir, converters=roads,
                                hooks=hooks)


def default_artifact_dirs(root: Path, task: str, mechanisms: list[str]) -> list[Path]:
    """ROOT/TASK/MECHANISM for each mechanism, refused unless each holds an export."""
    dirs = [root / task / m for m in mechanisms]
    missing = [d for d in dirs if not (d / "manifest.json").is_file()]
    if missing:
        raise PayattnError(
            f"no exported artifacts in {', '.join(map(str, missing))}; run "
            f"`payattn export --mechanism {','.join(mechanisms)} --task {task} --out {root}` first "
            "or pass artifact dirs"
        )
    return dirs


def export_sweep(folder: Path, precisions: str, *, seeds: list[int] | None = None,
                 mechanisms: list[str] | None = None, force: bool = False, data_dir: Path | None = None,
                 converters: str = "onnx2tf", wait: bool = False,
                 hooks: Hooks = Hooks()) -> tuple[list[ExportJob], list[Any]]:
    """`payattn export --sweep`: export finished points to FOLDER/artifacts/VARIANT/seed-N, where
    the report finds them to tie bench results to points, each artifact dir locked meanwhile.
    Returns the jobs and manifests."""
    from payattn.export import check_export_target, choose_roads
    from payattn.sweep_index import read_index

    chosen = parse_precisions(precisions)
    roads = choose_roads(converters)
    folder = Path(folder)
    jobs = [ExportJob(folder / e["run_dir"], folder / "artifacts" / e["variant"] / f"seed-{e['seed']}")
            for e in read_index(folder)["points"]
            if e["status"] == "done" and (seeds is None or e["seed"] in seeds)
            and (mechanisms is None or e["mechanism"] in mechanisms)]
    if not jobs:
        raise PayattnError(f"{folder} has no finished point with those seeds and mechanisms; "
                           "check `--seeds` and `--mechanism` against its sweep.json")
    for job in jobs:
        check_export_target(job.out_dir, force)
    with locked([(lock_beside(job.out_dir), job.out_dir) for job in jobs], wait=wait, log=hooks.log):
        for job in jobs:  # again under the lock: another writer may have been first
            check_export_target(job.out_dir, force)
        return jobs, export_all(jobs, chosen, force=force, data_dir=data_dir, converters=roads,
                                hooks=hooks)


def verify_precisions(artifact_dirs: list[Path], precision: str) -> list[str]:
    """The precisions of `precision` that the dirs hold (all of them when none does, so the
    job names what is missing)."""
    from payattn.runtime.artifacts import load_manifest

    asked = parse_precisions(precision)
    have = {e["precision"] for d in artifact_dirs
            for e in load_manifest(Path(d) / "manifest.json")["artifacts"]}
    return [p for p in asked if p in have] or asked


@dataclass
class DemoOutcome:
    results: Path
    report: Any
    seconds: float
    measured: int = 0
    failures: list[Any] = field(default_factory=list)


def check_demo_target(out: Path, tasks: list[str], force: bool) -> None:
    """Refuse a demo folder that would overwrite anything payattn did not write there."""
    from payattn.export import check_export_target
    from payattn.train import check_run_target

    check_not_precious(out, "--out")
    if out.exists() and not out.is_dir():  # before --force is suggested: it cannot help here
        raise PayattnError(f"{out} exists and is not a folder; choose another --out (a new or a "
                           "demo folder)")
    if out.exists() and not force:
        raise PayattnError(f"{out} already exists; pass --force to replace payattn's outputs in it "
                           f"(its runs/, artifacts/, results.jsonl, report/), or choose another --out")
    check_writable(out, "--out")
    for task in tasks:
        for mech in MECHANISMS:
            check_run_target(out / "runs" / task / mech, force)
            check_export_target(out / "artifacts" / task / mech, force)
    results = out / "results.jsonl"
    if results.exists() and not _payattn_results(results):
        raise PayattnError(f"{results} holds lines payattn did not write; move it away or choose "
                           f"another --out")
    report = out / "report"
    if report.exists() and not report.is_dir():
        raise PayattnError(f"{report} is a file, not a report folder; move it away or choose another --out")


def _payattn_results(path: Path) -> bool:
    """Whether `path` is a regular file (not a link) whose every line is a result line payattn wrote."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as stream:
        return all(not line.strip() or line.startswith(RESULT_PREFIX) for line in stream)


def run_demo(out: Path, *, text: bool, epochs: int | None, precisions: str,
             settings: BenchSettings, force: bool, hooks: Hooks = Hooks()) -> DemoOutcome:
    """Train the four mechanisms on the embedded data, export them by every road, bench here
    with ONNX Runtime, LiteRT and ExecuTorch, and write the report, all under `out`, locked
    meanwhile. Each mechanism trains and exports in its own worker process, as many at once
    as there are cores (up to four); the benchmark runs alone afterwards. With `force`,
    payattn's own outputs there are replaced one by one (each checked to be payattn's first);
    nothing else is touched."""
    from payattn.train import check_train_options, default_epochs

    chosen = parse_precisions(precisions)
    tasks = ["mnist-5k"] + (["movie-reviews"] if text else [])
    for task in tasks:
        check_train_options(epochs=epochs if epochs is not None else default_epochs(task), seed=0,
                            threads=1, overrides=None)
    check_demo_target(out, tasks, force)
    with locked([(lock_inside(out), out)], log=hooks.log):
        if not force and any(p.name != LOCK_NAME for p in out.iterdir()):
            raise PayattnError(f"{out} was filled by another payattn process meanwhile; pass "
                               f"--force to replace payattn's outputs in it, or choose another --out")
        check_demo_target(out, tasks, force=True)  # ownership again: another demo may have been first
        return _demo(out, tasks, epochs, chosen, settings, force, hooks)


def _demo(out: Path, tasks: list[str], epochs: int | None, chosen: list[str],
          settings: BenchSettings, force: bool, hooks: Hooks) -> DemoOutcome:
    """The demo's work, under its folder's lock (its workers are spawned, so none inherits it)."""
    from payattn.bench import build_job
    from payattn.devices import run_on_devices
    from payattn.report import report as write_report
    from payattn.workers import run_side_by_side, usable_cores

    started = time.perf_counter()
    jobs = [(train_and_export, (task, mech, out, epochs, chosen, force))
            for task in tasks for mech in MECHANISMS]
    done = list(run_side_by_side(jobs, min(usable_cores(), 4), hooks))  # every worker ends here
    artifact_dirs: dict[str, list[Path]] = {task: [] for task in tasks}
    for (_, (task, *_)), artifact_dir in zip(jobs, done):
        artifact_dirs[task].append(artifact_dir)
    results = out / "results.jsonl"
    if results.exists():  # checked above to hold payattn's lines only
        results.unlink()
    failures, measured = [], 0
    for task in tasks:
        job = build_job(artifact_dirs[task], RUNTIMES, chosen, settings)
        lines, failed = run_on_devices(["local"], job, results, log=hooks.log, on_result=hooks.on_result)
        measured, failures = measured + len(lines), failures + failed
    paths = write_report(results, out / "report", force=force)
    return DemoOutcome(results, paths, time.perf_counter() - started, measured, failures)


def train_and_export(task: str, mechanism: str, out: Path, epochs: int | None,
                     precisions: list[str], force: bool, hooks: Hooks) -> Path:
    """One mechanism of the demo: trained into OUT/runs/TASK/MECHANISM, exported by every road
    into OUT/artifacts/TASK/MECHANISM (returned)."""
    from payattn.train import train

    run_dir, label = out / "runs" / task / mechanism, f"train {task}/{mechanism}"
    metrics = train(task, mechanism, run_dir, epochs=epochs, force=force, progress=hooks.training(label))
    hooks.done(label, f"test accuracy {metrics['test_accuracy']:.2%}")
    job = ExportJob(run_dir, out / "artifacts" / task / mechanism, trained=True)
    export_all([job], precisions, force=force, converters="all", hooks=hooks)
    return job.out_dir
