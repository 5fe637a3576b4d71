"""Sweeps: mechanisms × seeds × presets × model-shape options, each point an ordinary run dir.

    run_sweep(spec, out) -> list[PointResult]

A point is trained by `payattn.train.train`, exactly as `payattn train` does, into
OUT/runs/VARIANT/seed-N, so export and bench take it unchanged. OUT/sweep.json indexes the
points (spec, status, accuracy, errors) and is rewritten atomically as points finish (IndexWriter:
in time linear in the points finished); an interrupted sweep resumes: a point whose run dir is
complete and matches is skipped. A failing point is recorded and reported; the others go on.
A sweep is bounded (MAX_POINTS per command, MAX_INDEX_POINTS per folder) before any point is
built, and the error says how to split it.

Points run in a local process pool sized to the cores, one torch thread each (the result of
a point depends only on its seed, so the pool gives the same models as a sequential run), or
as Ray tasks on an existing cluster (`ray_address`): each task trains in a temporary folder
on its node and returns the run dir's files, which are written under OUT here, so the cluster
needs no shared filesystem. Ray retries tasks whose worker or node was lost.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import shutil
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator

import payattn
from payattn import config
from payattn.errors import PayattnError
from payattn.files import pause_point, write_file_atomic
from payattn.locks import lock_inside, locked
from payattn.mechanisms import MECHANISMS
from payattn.runtime.readers import read_json
from payattn.sweep_index import INDEX, SCHEMA, read_index
from payattn.workers import usable_cores

RAY_RETRIES = 3  # re-runs of a task whose worker or node died (application errors are not retried)
MAX_POINTS = 10_000  # points of one sweep command: each trains a model; more is a cluster's queue
MAX_INDEX_POINTS = 100_000  # points one sweep folder indexes, over all the sweeps run into it
MAX_INDEX_BYTES = 64 << 20  # a full folder's index is about 30 MB
MAX_WORKERS = 256
REWRITE_SHARE = 64  # rewrite the index once 1/64 of its entries have finished since the last write
REWRITE_SECONDS = 30.0
SPLIT_HINT = ("split it into several sweeps over parts of the grid, e.g. --seeds 0-4999 then "
              "--seeds 5000-9999, or one -m mechanism at a time, into the same --out (finished "
              "points are kept and indexed together)")


def sweep_options() -> list[str]:
    """The model-shape settings a sweep takes several values of, in the table's order (read at
    each call from payattn.config.SHAPE_SETTINGS, where they are declared)."""
    return [s.name for s in config.SHAPE_SETTINGS if s.sweeps]


@dataclass(frozen=True)
class Point:
    """One training run of a sweep: a mechanism, a seed and the non-default shape settings."""

    mechanism: str
    seed: int
    preset: str
    options: tuple[tuple[str, int], ...] = ()  # (shape option, value), in sweep_options() order
    preset_named: bool = False  # the preset is part of the variant name (several were swept)

    @property
    def variant(self) -> str:
        """The point's name without the seed: mechanism, then each chosen setting."""
        parts = [self.mechanism] + ([self.preset] if self.preset_named else [])
        parts += [f"{name.replace('_', '-')}-{value}" for name, value in self.options]
        return "_".join(parts)

    @property
    def id(self) -> str:
        return f"{self.variant}/seed-{self.seed}"

    @property
    def setting(self) -> dict[str, Any]:
        """What besides the mechanism and seed defines this point (for grouping in the report)."""
        return {"preset": self.preset, **dict(self.options)}


@dataclass(frozen=True)
class SweepSpec:
    """The grid: every combination of mechanism, seed, preset and shape-option value."""

    task: str
    mechanisms: tuple[str, ...]
    seeds: tuple[int, ...]
    presets: tuple[str, ...]
    options: tuple[tuple[str, tuple[int, ...]], ...] = ()
    epochs: int = 1
    data_dir: str | None = None

    def points(self) -> list[Point]:
        names = [name for name, _ in self.options]
        grids = [values for _, values in self.options]
        named = len(self.presets) > 1
        return [Point(mech, seed, preset, tuple(zip(names, combo)), named)
                for preset in self.presets for combo in itertools.product(*grids)
                for mech in self.mechanisms for seed in self.seeds]


@dataclass
class PointResult:
    point: Point
    status: str  # "done", "failed" or "skipped" (finished by an earlier run)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    where: str = ""


@dataclass
class Status:
    """The live view of a sweep: what is finished, running and left."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0

    @property
    def finished(self) -> int:
        return self.skipped + self.done + self.failed


def make_spec(task: str, mechanisms: list[str], seeds: list[int], *, presets: list[str] | None = None,
              options: dict[str, list[int]] | None = None, epochs: int | None = None,
              data_dir: Path | str | None = None) -> SweepSpec:
    """Check the axes (the bounds of `payattn train`) and fill in the task's defaults (preset, epochs)."""
    from payattn.data import check_data_dir
    from payattn.train import check_task_preset, check_train_options, default_epochs

    if not seeds:
        raise PayattnError("--seeds gives no seeds; give a count (5), a range (3-7) or a list (0,4,9)")
    if len(set(seeds)) != len(seeds):
        repeated = sorted(seed for seed, n in Counter(seeds).items() if n > 1)
        raise PayattnError(f"--seeds must give distinct seeds; given more than once: "
                           f"{', '.join(map(str, repeated[:5]))}")
    check_grid({"mechanisms": len(set(mechanisms)), "seeds": len(seeds),
                "presets": len(presets or [None]),
                **{f"--{n.replace('_', '-')} values": len(v) for n, v in (options or {}).items() if v}})
    check_data_dir(task, data_dir)
    presets = [check_task_preset(task, preset) for preset in presets or [None]]
    epochs = epochs if epochs is not None else default_epochs(task)
    chosen, valid = [], sweep_options()
    for name, values in (options or {}).items():
        if name not in valid:
            raise PayattnError(f"unknown sweep option {name!r}; valid: {', '.join(valid)}")
        if values:
            if len(set(values)) != len(values):
                raise PayattnError(f"--{name.replace('_', '-')} takes distinct values, got {values}")
            chosen.append((name, tuple(values)))
    chosen.sort(key=lambda item: valid.index(item[0]))
    for seed in seeds:
        check_train_options(epochs=epochs, seed=seed, threads=1, overrides={})
    for name, values in chosen:
        for value in values:
            check_train_options(epochs=epochs, seed=seeds[0], threads=1, overrides={name: value})
    return SweepSpec(task, tuple(sorted(set(mechanisms), key=MECHANISMS.index)), tuple(seeds),
                     tuple(presets), tuple(chosen), epochs, str(data_dir) if data_dir else None)


def parse_seeds(text: str) -> list[int]:
    """`--seeds`, the same in every command: '5' → seeds 0–4; '3-7' → 3 to 7; '0,4,9' → those.
    The count is checked before any list is built, so a huge range costs nothing."""
    text = text.strip()
    listed = "," in text
    ranged = not listed and "-" in text.lstrip("-")
    try:
        if listed:
            seeds = [int(part) for part in text.split(",") if part.strip()]
            low, count = 0, len(seeds)
        elif ranged:
            low, high = (int(part) for part in text.split("-", 1))
            count = high - low + 1
        else:
            low, count = 0, int(text)
    except ValueError:
        raise PayattnError(f"--seeds {text!r}: give a count (5), a range (3-7) or a list (0,4,9)") from None
    if ranged and count < 1:
        raise PayattnError(f"--seeds {text}: the range is empty ({high} is below {low}); write the "
                           f"lower seed first, e.g. --seeds {high}-{low}")
    if listed and count < 1:
        raise PayattnError(f"--seeds {text!r} lists no seeds; give a list such as 0,4,9")
    if count < 1:
        raise PayattnError(f"--seeds {text} is a count of no seeds; give at least 1 (--seeds 1 is "
                           "seed 0 alone, --seeds 3-3 is seed 3 alone)")
    if count > MAX_POINTS:
        raise PayattnError(f"--seeds {text} gives {count:,} seeds; a sweep takes at most "
                           f"{MAX_POINTS:,} points; {SPLIT_HINT}")
    return seeds if listed else list(range(low, low + count))


def check_grid(counts: dict[str, int]) -> int:
    """The number of points of a grid with these axis lengths, refused over MAX_POINTS before
    any point is built."""
    total = math.prod(counts.values())
    if total > MAX_POINTS:
        axes = " × ".join(f"{n:,} {axis}" for axis, n in counts.items() if n > 1) or "1 point"
        raise PayattnError(f"the sweep has {total:,} points ({axes}); a sweep takes at most "
                           f"{MAX_POINTS:,} points; {SPLIT_HINT}")
    return total


# ---- one point ------------------------------------------------------------------------

def run_dir_of(out: Path, point: Point) -> Path:
    return Path(out) / "runs" / point.variant / f"seed-{point.seed}"


def _matches(run_dir: Path, spec: SweepSpec, point: Point) -> bool | None:
    """True if run_dir holds this point's finished run, False if something else, None if nothing."""
    from payattn.train import read_run_config

    if not run_dir.exists():
        return None
    if not all((run_dir / name).is_file() for name in ("model.pt", "metrics.json", "config.json")):
        return False
    config = read_run_config(run_dir)  # a damaged file is an error naming it
    same = (config["task"], config["mechanism"], config["seed"], config["preset"], config["epochs"]) == (
        spec.task, point.mechanism, point.seed, point.preset, spec.epochs)
    return same and all(config["model"].get(k) == v for k, v in point.options if k != "max_vocab")


@functools.lru_cache(maxsize=2)
def _dataset(task: str, data_dir: str | None) -> Any:
    from payattn.data import load_task

    return load_task(task, data_dir)


def train_point(spec: SweepSpec, point: Point, run_dir: Path, force: bool = False) -> PointResult:
    """Train one point with `payattn.train.train` (one torch thread); failures become results.
    `force` replaces an existing run dir (payattn's own only, as `payattn train --force`)."""
    from payattn.train import train

    started = time.perf_counter()
    try:
        metrics = train(spec.task, point.mechanism, run_dir, preset=point.preset, epochs=spec.epochs,
                        seed=point.seed, data_dir=Path(spec.data_dir) if spec.data_dir else None,
                        overrides=dict(point.options), dataset=_dataset(spec.task, spec.data_dir),
                        threads=1, force=force)
    except PayattnError as exc:
        return PointResult(point, "failed", error=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # a point's crash must not stop the sweep; keep where it happened
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return PointResult(point, "failed", error=f"{type(exc).__name__}: {exc} "
                           f"(at {Path(where.filename).name}:{where.lineno})",
                           seconds=time.perf_counter() - started)
    return PointResult(point, "done", metrics, seconds=time.perf_counter() - started,
                       where=os.uname().nodename)


def _pool_init() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def _train_point_files(spec: SweepSpec, point: Point, version: str) -> dict[str, Any]:
    """A Ray task: train in a temporary folder on the worker's node, return the run dir's files."""
    from payattn.train import RUN_FILES

    if version != payattn.__version__:
        message = (f"the Ray worker runs payattn {payattn.__version__}, the caller {version}; "
                      "install the same payattn[ray] on every node")
        return {"result": PointResult(point, "failed", error=message), "files": {}}
    with tempfile.TemporaryDirectory(prefix="payattn-point-") as tmp:
        run_dir = Path(tmp) / "run"
        result = train_point(spec, point, run_dir)
        files = {name: (run_dir / name).read_bytes() for name in RUN_FILES if (run_dir / name).is_file()}
    return {"result": result, "files": files}


def place_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run dir's files beside `run_dir`, then swap them into place (never half a run dir)."""
    from payattn.files import replace_dir, temp_dir_beside
    from payattn.train import check_run_target

    check_run_target(run_dir, force=True)  # only ever replaces a run dir payattn wrote
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(run_dir)
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        replace_dir(tmp, run_dir, "sweep")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---- executors: each yields (running count, finished results) as points end -------------

Events = Iterator[tuple[int, list[PointResult]]]


def _sequential(spec: SweepSpec, points: list[Point], out: Path, force: bool) -> Events:
    for point in points:
        yield 1, []
        yield 0, [train_point(spec, point, run_dir_of(out, point), force)]


def _local_pool(spec: SweepSpec, points: list[Point], out: Path, workers: int, force: bool) -> Events:
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_pool_init) as pool:
        pending: dict[Future[PointResult], Point] = {
            pool.submit(train_point, spec, p, run_dir_of(out, p), force): p for p in points}
        try:
            while pending:
                finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                results = [_future_result(f, pending.pop(f)) for f in finished]
                yield min(workers, sum(f.running() for f in pending)), results
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _future_result(future: Future[PointResult], point: Point) -> PointResult:
    try:
        return future.result()
    except Exception as exc:  # the worker process died (killed, out of memory)
        return PointResult(point, "failed", error=f"worker process lost: {type(exc).__name__}: {exc}")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PayattnError("--ray needs Ray: pip install 'payattn[ray]' (on this machine and every "
                           "node of the cluster)") from None
    return ray


def _ray(spec: SweepSpec, points: list[Point], out: Path, address: str) -> Events:
    from payattn import ray_connect

    ray = _import_ray()
    ray_connect.connect(ray, address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_train_point_files)
        pending = {remote.remote(spec, p, payattn.__version__): p for p in points}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=1.0)
            results = [_ray_result(ray, ref, pending.pop(ref), out) for ref in ready]
            busy = ray.cluster_resources().get("CPU", 0) - ray.available_resources().get("CPU", 0)
            yield min(len(pending), max(0, round(busy))), results
    finally:
        ray.shutdown()


def _ray_result(ray: Any, ref: Any, point: Point, out: Path) -> PointResult:
    try:
        payload = ray.get(ref)
    except ray.exceptions.RayError as exc:  # retries exhausted, node lost, task cancelled
        return PointResult(point, "failed", error=f"Ray: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    result: PointResult = payload["result"]
    if result.status == "done":
        place_files(run_dir_of(out, point), payload["files"])
    return result


# ---- the sweep ------------------------------------------------------------------------

def check_workers(workers: int | None) -> None:
    """`--workers`: None (the cores) or 1 to MAX_WORKERS local processes."""
    if workers is not None and (isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS):
        raise PayattnError(f"--workers must be a whole number from 1 to {MAX_WORKERS}, got {workers}; "
                           "leave it out to use one process per core")


def run_sweep(spec: SweepSpec, out: Path, *, workers: int | None = None, ray_address: str | None = None,
              force: bool = False, on_status: Callable[[Status], None] | None = None,
              on_result: Callable[[PointResult], None] | None = None,
              wait: bool = False) -> list[PointResult]:
    """Train every point of `spec` not already finished under `out`; return all point results.
    The folder is locked meanwhile (`wait`: wait for another sweep instead of failing), so two
    sweeps never interleave their points or indexes."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PayattnError(f"sweep folder {out} is a file; pass a folder path")
    if ray_address:  # before anything is written
        from payattn.ray_connect import probe

        probe(ray_address)
        _import_ray()
    check_workers(workers)
    with locked([(lock_inside(out), out)], wait=wait):
        return _run_locked(spec, out, workers, ray_address, force, on_status, on_result)


def _run_locked(spec: SweepSpec, out: Path, workers: int | None, ray_address: str | None,
                force: bool, on_status: Callable[[Status], None] | None,
                on_result: Callable[[PointResult], None] | None) -> list[PointResult]:
    """run_sweep's work, under the folder's lock."""
    points = spec.points()
    earlier = earlier_entries(out, points)
    results = {} if force else _finished(spec, points, out)
    todo = [p for p in points if p.id not in results]
    status = Status(len(points), skipped=len(results))
    out.mkdir(parents=True, exist_ok=True)
    index = IndexWriter(out, spec, points, earlier)
    index.write(results)
    workers = max(1, min(workers or usable_cores(), len(todo) or 1))
    if ray_address:
        events = _ray(spec, todo, out, ray_address)
    elif workers == 1:
        events = _sequential(spec, todo, out, force)
    else:
        events = _local_pool(spec, todo, out, workers, force)
    if on_status:
        on_status(status)
    try:
        for running, finished in events:
            for result in finished:
                results[result.point.id] = result
                status.done += result.status == "done"
                status.failed += result.status == "failed"
                if on_result:
                    on_result(result)
            if finished:
                pause_point("sweep:index")  # the fault tests kill here: run dirs written, index not yet
                index.finished(results, len(finished))
            status.running = running
            if on_status:
                on_status(status)
    finally:  # Ctrl-C or SIGTERM: the index still records every point finished so far
        index.flush(results)
    return [results[p.id] for p in points]


def _finished(spec: SweepSpec, points: list[Point], out: Path) -> dict[str, PointResult]:
    """The points already trained under `out`; anything else in a point's run dir is refused."""
    found = {}
    for point in points:
        run_dir = run_dir_of(out, point)
        state = _matches(run_dir, spec, point)
        if state is False:
            raise PayattnError(f"{run_dir} holds another run (other epochs, preset or shape) or an "
                               "incomplete one; choose another --out, or pass --force to retrain it")
        if state:
            metrics = read_json(run_dir / "metrics.json", "run metrics",
                                f"retrain that point with `payattn sweep --force` or remove {run_dir}")
            found[point.id] = PointResult(point, "skipped", metrics)
    return found


class IndexWriter:
    """OUT/sweep.json, kept in memory and rewritten atomically when the points finished since
    the last write pay for it: a rewrite costs time in proportion to the entries, so it waits
    for one point in REWRITE_SHARE of them (a small sweep: every point), or REWRITE_SECONDS.
    The work on the index is thus linear in the points finished, not points × grid; a killed
    sweep loses only index lines, since a resume finds finished points by their run dirs."""

    def __init__(self, out: Path, spec: SweepSpec, points: list[Point],
                 earlier: dict[str, dict[str, Any]]) -> None:
        self.out, self.spec, self.points, self.earlier = out, spec, points, earlier
        self.unwritten = 0
        self.last = time.monotonic()
        self.writes = 0

    def write(self, results: dict[str, PointResult]) -> None:
        write_index(self.out, self.spec, self.points, results, self.earlier)
        self.unwritten, self.last, self.writes = 0, time.monotonic(), self.writes + 1

    def finished(self, results: dict[str, PointResult], count: int) -> None:
        self.unwritten += count
        entries = len(self.points) + len(self.earlier)
        if (self.unwritten * REWRITE_SHARE >= entries
                or time.monotonic() - self.last >= REWRITE_SECONDS):
            self.write(results)

    def flush(self, results: dict[str, PointResult]) -> None:
        if self.unwritten:
            self.write(results)


def earlier_entries(out: Path, points: list[Point]) -> dict[str, dict[str, Any]]:
    """The entries of OUT/sweep.json from earlier sweeps into `out`, read once; refused if the
    folder would then index more than MAX_INDEX_POINTS points."""
    path = out / INDEX
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise PayattnError(f"{path} is {path.stat().st_size / 2**20:,.0f} MiB, over the "
                           f"{MAX_INDEX_BYTES // 2**20} MiB a sweep index may be; sweep into a new --out")
    entries = {entry["id"]: entry for entry in read_index(out)["points"]}
    total = len(entries.keys() | {p.id for p in points})
    if total > MAX_INDEX_POINTS:
        raise PayattnError(f"{out} would index {total:,} points, over the {MAX_INDEX_POINTS:,} one "
                           "sweep folder takes; sweep the rest into a new --out")
    return entries


def write_index(out: Path, spec: SweepSpec, points: list[Point], results: dict[str, PointResult],
                earlier: dict[str, dict[str, Any]] | None = None) -> Path:
    """Rewrite OUT/sweep.json atomically; points from earlier runs of a wider sweep (`earlier`,
    read from the file when not given) are kept."""
    path = out / INDEX
    if earlier is None:
        earlier = {entry["id"]: entry for entry in read_index(out)["points"]} if path.is_file() else {}
    entries = dict(earlier)
    for point in points:
        r = results.get(point.id)
        entry = {"id": point.id, "variant": point.variant, "run_dir": f"runs/{point.id}",
                 "mechanism": point.mechanism, "seed": point.seed, "setting": point.setting,
                 "status": "pending" if r is None else "done" if r.status == "skipped" else r.status}
        if r is not None:
            entry.update(test_accuracy=r.metrics.get("test_accuracy"), error=r.error,
                         seconds=round(r.seconds, 3), where=r.where)
            if r.status == "skipped":
                entry.update({k: v for k, v in entries.get(point.id, {}).items()
                              if k in ("seconds", "where")})
        entries[point.id] = entry
    spec_data = asdict(spec)
    spec_data["options"] = {name: list(values) for name, values in spec.options}
    # One line per key and per point: readable, and written by json's C encoder (indent= is
    # pure Python, 3× slower on a big index).
    points_text = ",\n".join(f"    {json.dumps(entry)}" for entry in entries.values())
    text = (f'{{\n  "schema": {json.dumps(SCHEMA)},\n  "payattn_version": {json.dumps(payattn.__version__)},'
            f'\n  "spec": {json.dumps(spec_data)},\n  "points": [\n{points_text}\n  ]\n}}\n')
    return write_file_atomic(path, text)
