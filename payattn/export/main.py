"""The export pipeline: a run dir to an artifact dir (ONNX, builtin-only TFLite per road and
precision, manifest).

    export(run_dir, out_dir, converters=("onnx2tf", "litert-torch")) -> Manifest

`export` runs named stages, each a function that can be called alone (most on an ExportState):
`load` the run and its task's data; `convert` it with torch.onnx.export (opset 20, TorchScript
exporter, static batch-1 shapes) + onnxslim + onnx.checker, then by each road asked for
(roads.py: onnx2tf and the TFLite converter, for a vision model also in its app form with RGB
pixels in; litert-torch); a road that fails is left out, named in the manifest, when another
was asked for; `check_operators` reads each .tflite's operator table and rejects any
non-builtin operator; `write_metadata` writes each signature and its TFLite Metadata (app.py),
proving no output bit changed, and records GPU-delegate compatibility (gpu.py); `verify_artifacts`
runs every artifact beside PyTorch on random and real test inputs, and `keep_or_stop` holds the
figures to the tolerances in verify.py; `write_manifest` writes manifest.json, labels.txt and
USAGE.md. Everything is built in a temporary dir beside `out_dir` and renamed into place only
when all stages pass, so a failure leaves nothing behind and names the failed step. A
reduced-precision TFLite file (fp16, dynamic-int8, int8) that fails verification is left out
instead, with its app form: the dir is written, whole, with every artifact that passed, and
PartialExport says which precision to drop.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import onnx

import payattn
from payattn.errors import PayattnError
from payattn.cost import model_cost
from payattn.data import Dataset, Prepared, check_data_dir, load_task, prepare
from payattn.data.tokenizer import CASES, DELIMITER, DELIMITER_RE2
from payattn.export import app, appform, gpu, ops, roads, tflite, usage, verify
from payattn.export import manifest as mf
from payattn.export.appform import Variant
from payattn.export.manifest import Manifest
from payattn.export.onnx_graph import example_input, export_onnx
from payattn.files import check_target, clean_leftovers, pause_point, replace_dir, temp_dir_beside
from payattn.mechanisms import parse_precisions
from payattn.runtime.artifacts import sha256_file
from payattn.runtime.formats import ONNX_CONVERTER, PRECISIONS
from payattn.runtime.parity import REFERENCE_FILES
from payattn.train import LoadedRun, load_run

__all__ = ["PRECISIONS", "DEFAULT_PRECISIONS", "Manifest", "PartialExport", "export", "parse_precisions"]

DEFAULT_PRECISIONS = ("fp32", "fp16", "dynamic-int8")
# Test samples kept in the artifact dir, with the random inputs, for on-device parity: enough
# for the top-1 floor to mean something (98% = at most 3 misses), small enough to copy anywhere.
REFERENCE_TEST_SAMPLES = 192
# What an artifact dir holds: `--force` replaces a dir holding these names only.
ARTIFACT_FILES = ("manifest.json", "tokenizer.json", "model.onnx", *roads.file_names(),
                  app.LABELS_FILE, usage.FILE, *REFERENCE_FILES.values())

Log = Callable[[str], None]  # each step as it starts


def export(
    run_dir: Path | str,
    out_dir: Path | str,
    precisions: str | Iterable[str] = DEFAULT_PRECISIONS,
    force: bool = False,
    log: Log | None = None,
    data_dir: Path | str | None = None,
    converters: str | Iterable[str] = ("onnx2tf",),
) -> Manifest:
    """Export and verify the model of `run_dir` into `out_dir` by the roads `converters` names;
    return its manifest. `data_dir` overrides the dataset folder the run was trained from
    (full-dataset tasks)."""
    started = time.perf_counter()
    say = log or (lambda message: None)
    chosen, taken = parse_precisions(precisions), roads.choose_roads(converters)
    out_dir = Path(out_dir)
    check_export_target(out_dir, force)
    run, dataset, data = load(Path(run_dir), data_dir, say)
    created, tmp = _make_temp_dir(out_dir)
    try:
        state = ExportState(run, dataset, data, chosen, tmp, converters=taken)
        convert(state, say)
        with _step("checking TFLite operators", say, "ops", tmp):
            state.counts = check_operators(state.onnx, state.files.values())
        with _step("writing signatures and TFLite Metadata", say, "metadata", tmp):
            write_metadata(state)
        with _step("verifying against PyTorch", say, "verify", tmp):
            state.verified = verify_artifacts(state, say)
            dropped = keep_or_stop(state)
        with _step("writing the manifest", say, "manifest", tmp):
            manifest = write_manifest(state, started)
        with _step(f"moving the artifacts into {out_dir}", say, "move", tmp):
            replace_dir(tmp, out_dir, "export")
    except BaseException:
        _discard(tmp, created)
        raise
    if dropped:
        gone = {label.rsplit(" ", 1)[-1] for label in dropped}
        raise PartialExport(out_dir, manifest, dropped, [p for p in chosen if p not in gone])
    return manifest


@dataclass
class ExportState:
    """One export as its stages fill it in: the run, its data and the precisions asked for,
    and what has been built so far in the temp dir `tmp`."""

    run: LoadedRun
    dataset: Dataset
    data: Prepared
    precisions: list[str]
    tmp: Path
    variants: dict[str, Variant] = field(default_factory=dict)  # by file-name prefix, as trained first
    files: dict[tuple[str, str], Path] = field(default_factory=dict)  # by (graph key, precision)
    calibration_samples: int = 0  # full int8's, 0 without it
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # operator counts by file name
    verified: Verified | None = None
    converters: list[str] = field(default_factory=lambda: ["onnx2tf"])  # the roads, in order
    graphs: dict[str, tuple[str, str]] = field(default_factory=dict)  # graph key -> (converter, variant prefix)
    roads: dict[str, dict[str, Any]] = field(default_factory=dict)  # the manifest's, by converter
    gpu: dict[str, dict[str, Any]] = field(default_factory=dict)  # GPU-delegate report by file name

    @property
    def onnx(self) -> Path:
        return self.tmp / "model.onnx"

    @cached_property
    def samples(self) -> verify.Samples:
        """Random inputs and test samples, seeded: metadata and verification run on the same."""
        return verify.make_samples(self.run.config, self.data.test_x, self.data.test_y)

    def variant_of(self, name: str) -> Variant:
        """The graph a TFLite file was converted from."""
        return self.variants[self.graphs[self._prefix_of(name)][1]]

    def converter_of(self, name: str) -> str:
        """The converter that wrote an artifact."""
        return ONNX_CONVERTER if name == self.onnx.name else self.graphs[self._prefix_of(name)][0]

    def _prefix_of(self, name: str) -> str:
        return next(prefix for (prefix, _), path in self.files.items() if path.name == name)


@dataclass
class Verified:
    """What the verify stage measured: each artifact's figures, its format, inputs and outputs
    as an app feeds them (by file name), the summary the manifest records, and PyTorch's
    outputs on the samples."""

    checks: list[verify.Check]
    tensors: dict[str, tuple[str, list, list]]
    summary: dict[str, Any]
    reference: np.ndarray


def load(run_dir: Path, data_dir: Path | str | None, say: Log) -> tuple[LoadedRun, Dataset, Prepared]:
    """The run and its task's data, model-ready (steps load, data)."""
    with _step("loading the run dir", say, "load"):
        run = load_run(run_dir)
    if data_dir is not None:
        check_data_dir(run.run_config["task"], data_dir)
    with _step(f"loading task {run.run_config.get('task')!r}", say, "data"):
        dataset = load_task(run.run_config["task"], data_dir or run.run_config.get("data_dir"))
        return run, dataset, prepare(dataset, run.tokenizer)


def convert(state: ExportState, say: Log) -> None:
    """Write model.onnx, then each road's files of each graph (the model as trained, for vision
    also its app form) into the temp dir (steps onnx, onnx-app, tflite, one per other road).
    With several roads, one that fails is recorded in `state.roads` and the others go on."""
    run, tmp, chosen = state.run, state.tmp, state.precisions
    with _step("exporting ONNX", say, "onnx", tmp):
        export_onnx(run.model, run.config, state.onnx)
    state.variants = {v.prefix: v for v in appform.variants(run.config, state.dataset, state.onnx)}
    # Images always: the first ones also stand in for onnx2tf's downloaded sample images.
    needed = "int8" in chosen or run.config.kind == "vision"
    calibration = tflite.calibration_inputs(state.data.train_x) if needed else None
    state.calibration_samples = len(calibration) if "int8" in chosen else 0
    for name in state.converters:
        take_road(state, roads.ROADS[name], calibration, say)
    if not state.files:
        failed = "; ".join(entry["failed"] for entry in state.roads.values() if "failed" in entry)
        raise PayattnError(f"every road failed: {failed}")


def take_road(state: ExportState, road: roads.Road, calibration: np.ndarray | None, say: Log) -> None:
    """Convert every graph by `road`, timing it; when other roads were asked for too, its
    failure is recorded (with its files removed) instead of raised."""
    started, before = time.perf_counter(), set(state.files)
    try:
        left_out = _convert_graphs(state, road, calibration, say)
    except PayattnError as exc:
        if len(state.converters) == 1:
            raise
        for key in set(state.files) - before:
            state.files.pop(key).unlink(missing_ok=True)
        state.roads[road.converter] = {"seconds": round(time.perf_counter() - started, 3), "failed": str(exc)}
        say(f"the {road.converter} road failed; the other roads go on: {exc}")
        return
    state.roads[road.converter] = {"seconds": round(time.perf_counter() - started, 3),
                                   **({"left_out": left_out} if left_out else {})}


def _convert_graphs(state: ExportState, road: roads.Road, calibration: np.ndarray | None,
                    say: Log) -> dict[str, str]:
    """Each graph's files by one road (an ONNX road first exports the app forms to ONNX, and
    removes them once converted); returns the precisions it left out, with why."""
    run, tmp, chosen, left_out = state.run, state.tmp, state.precisions, {}
    apps = [v for v in state.variants.values() if v.app] if road.source == "onnx" else []
    graphs = [v for v in state.variants.values() if road.app_form or not v.app]
    into = "an ExecuTorch program" if road.suffix == ".pte" else "TFLite"
    try:
        for variant in apps:
            with _step("exporting the app form (RGB pixels in) to ONNX", say, "onnx-app", tmp):
                export_onnx(run.model, run.config, variant.onnx, (variant.mean, variant.std))
        for variant in graphs:
            what = variant.onnx.name if road.source == "onnx" else f"the {'app form' if variant.app else 'model'}"
            by = "" if road.source == "onnx" else f" with {road.converter}"
            key = "tflite" if road.source == "onnx" else road.converter
            with _step(f"converting {what} to {into}{by} ({', '.join(chosen)})", say, key, tmp):
                made = roads.make(road, run.model, run.config, variant, tmp, chosen, calibration)
            # Keyed by file-name prefix and, beside the TFLite files, the file kind: ExecuTorch's
            # model_fp32.pte shares its prefix with onnx2tf's model_fp32.tflite.
            key = road.prefix(variant.prefix) + ("" if road.suffix == ".tflite" else road.suffix)
            state.graphs[key] = (road.converter, variant.prefix)
            state.files.update({(key, p): path for p, path in made.items() if isinstance(path, Path)})
            left_out.update({p: why for p, why in made.items() if isinstance(why, str)})
    finally:
        for variant in apps:
            variant.onnx.unlink(missing_ok=True)
    return left_out


def check_operators(onnx_path: Path, files: Iterable[Path]) -> dict[str, dict[str, int]]:
    """Operator counts by file name; a TFLite file with a non-builtin operator is a PayattnError
    naming it and the ONNX nodes it most likely comes from. A .pte's count is its XNNPACK
    delegate segments and the operators left on ExecuTorch's portable kernels."""
    graph = onnx.load(str(onnx_path))
    counts = {onnx_path.name: ops.onnx_operator_counts(graph)}
    for path in files:
        if path.suffix == ".pte":
            counts[path.name] = pte_operator_counts(path)
            continue
        uses = ops.read_operators(path)
        ops.require_builtin(path, uses, graph)
        counts[path.name] = ops.operator_counts(uses)
    return counts


def pte_operator_counts(path: Path) -> dict[str, int]:
    """What runs a .pte: its XNNPACK delegate segments, then each portable kernel left outside."""
    from payattn.export.executorch_road import XNNPACK_BACKEND, delegation

    found = delegation(path)
    return {XNNPACK_BACKEND: found["partitions"], **found["outside"]}


def write_metadata(state: ExportState) -> None:
    """Give every TFLite file its signature and TFLite Metadata, proving on the random samples
    that no output bit changed, and record what LiteRT's analyzer says of its GPU compatibility."""
    for (prefix, _), path in state.files.items():
        if path.suffix != ".tflite":
            continue
        variant = state.variants[state.graphs[prefix][1]]
        spec = appform.app_spec(state.run, state.dataset, variant)
        appform.finish_unchanged(path, spec, variant.inputs(state.samples.random))
        state.gpu[path.name] = gpu.report(path)


def verify_artifacts(state: ExportState, say: Log) -> Verified:
    """Run each artifact on the samples beside PyTorch: the ONNX file of the model as trained
    and every TFLite file. Returns the figures; whether they stop the export is keep_or_stop's."""
    cfg, samples = state.run.config, state.samples
    x = np.concatenate([samples.random, samples.test_x])
    reference = verify.torch_logits(state.run.model, x)
    logit_scale = float(np.abs(reference).max())
    checks, tensors = [], {}
    for path, fmt, precision, variant, runner in _runners(state):
        say(f"verifying {path.name}")
        logits = verify.run_all(runner, variant.inputs(x))
        checks.append(verify.check(path.name, precision, reference, logits, samples, logit_scale))
        tensors[path.name] = (fmt, [_input_spec(spec, cfg, fmt, variant.app) for spec in runner.inputs], runner.outputs)
    return Verified(checks, tensors, _verification_summary(samples, reference, logit_scale), reference)


def _runners(state: ExportState) -> list[tuple[Path, str, str, Variant, verify.OpenModel]]:
    """Each artifact to verify, loaded: (path, format, precision, its graph, runner)."""
    trained = next(iter(state.variants.values()))
    found = [(trained.onnx, "onnx", "fp32", trained, verify.open_onnx(trained.onnx))]
    for (prefix, precision), path in state.files.items():
        variant = state.variants[state.graphs[prefix][1]]
        if path.suffix == ".pte":
            example, name = example_input(state.run.config), found[0][4].inputs[0]["name"]
            found.append((path, "pte", precision, variant, verify.open_pte(path, example, name)))
            continue
        shape = tuple(example_input(state.run.config, variant.app).shape)
        found.append((path, "tflite", precision, variant, verify.open_tflite(path, shape)))
    return found


def _verification_summary(samples: verify.Samples, reference: np.ndarray, logit_scale: float) -> dict[str, Any]:
    """What all artifacts were checked on and held to, as the manifest records it."""
    n_random = len(samples.random)
    return {
        "random_inputs": n_random, "test_samples": len(samples.test_x),
        "test_split_size": samples.test_split_size,
        "pytorch_test_accuracy": float((reference[n_random:].argmax(1) == samples.test_y).mean()),
        "logit_scale": logit_scale,
        "max_abs_diff": {p: verify.tolerance(p, logit_scale) for p in verify.MAX_ABS_DIFF},
        "min_top1_agreement": verify.MIN_TOP1_AGREEMENT,
    }


def _input_spec(spec: dict[str, Any], cfg: Any, fmt: str, app_form: bool) -> dict[str, Any]:
    """Complete an input's description the way an app needs it: layout, colour, id range."""
    spec = dict(spec)
    if cfg.kind == "text":
        spec.update(layout="tokens", low=0, high=cfg.vocab_size)
    else:
        if fmt == "onnx":
            spec["layout"] = "NCHW"
        spec.update(appform.image_color(cfg, app_form))
    return spec


def keep_or_stop(state: ExportState) -> dict[str, list[str]]:
    """What stops the export: ONNX or fp32 TFLite missing a limit, or no TFLite file passing
    (VerificationError, with every figure). A reduced-precision TFLite file that misses is left
    out instead, and with it its road's other file of that precision (the as-trained one or the
    app form): their files and checks go, and the road's manifest entry says why. Returns each
    left-out precision's misses, by precision (onnx2tf) or "converter precision" (other roads)."""
    checks = state.verified.checks
    tflite_files = {path.name for path in state.files.values()}
    left_out = [c for c in checks if c.failures and c.file in tflite_files and c.precision != "fp32"]
    kept = [c for c in checks if c not in left_out]
    if any(c.failures for c in kept) or (left_out and not any(c.file in tflite_files for c in kept)):
        raise verify.VerificationError(checks)
    dropped: dict[str, list[str]] = {}
    pairs = {(state.converter_of(c.file), c.precision) for c in left_out}
    for c in left_out:
        converter = state.converter_of(c.file)
        label = c.precision if converter == "onnx2tf" else f"{converter} {c.precision}"
        dropped.setdefault(label, []).extend(c.failures)
        reasons = state.roads.setdefault(converter, {}).setdefault("left_out", {})
        reasons[c.precision] = "; ".join(filter(None, [reasons.get(c.precision), *c.failures]))
    state.verified.checks = [c for c in kept if (state.converter_of(c.file), c.precision) not in pairs]
    for key in [k for k in state.files if (state.graphs[k[0]][0], k[1]) in pairs]:
        state.files.pop(key).unlink()
    return dropped


def write_manifest(state: ExportState, started: float) -> Manifest:
    """Write manifest.json, labels.txt, USAGE.md, the reference arrays and (text) the tokenizer
    into the temp dir; `started` is when the export began, for its duration."""
    run, tmp, verified = state.run, state.tmp, state.verified
    if run.tokenizer is not None:
        shutil.copyfile(run.run_dir / "tokenizer.json", tmp / "tokenizer.json")
    summary = {**verified.summary, "calibration_samples": state.calibration_samples}
    artifacts = [_artifact_entry(state, check) for check in verified.checks]
    (tmp / app.LABELS_FILE).write_text("".join(f"{label}\n" for label in state.dataset.labels))
    document = _manifest(run, state.dataset, artifacts, summary)
    document["reference"] = _write_reference(tmp, state.samples, verified.reference)
    if state.roads:
        document["roads"] = state.roads
    document["export_seconds"] = round(time.perf_counter() - started, 3)
    manifest = Manifest(document)
    manifest.write(tmp)
    usage.write(tmp, document)
    return manifest


def _artifact_entry(state: ExportState, check: verify.Check) -> dict[str, Any]:
    """One artifact's manifest entry; a TFLite file's also says what an app reads from it."""
    path = state.tmp / check.file
    entry = mf.artifact_entry(path, check, state.converter_of(check.file), state.counts[check.file],
                              *state.verified.tensors[check.file])
    if entry["format"] == "tflite":
        entry.update(appform.app_entry(path, state.variant_of(check.file)), gpu=state.gpu[check.file])
    elif entry["format"] == "pte":
        from payattn.export.executorch_road import delegation

        entry["xnnpack"] = delegation(path)
    return entry


def _write_reference(out_dir: Path, samples: verify.Samples, reference: np.ndarray) -> dict[str, Any]:
    """Save the random inputs and the first test samples with PyTorch's outputs for them, so a
    device can check its own answers later (payattn.runtime.parity); return the manifest entry."""
    n_random, n_test = len(samples.random), min(REFERENCE_TEST_SAMPLES, len(samples.test_x))
    arrays = {"inputs": np.concatenate([samples.random, samples.test_x[:n_test]]),
              "outputs": reference[:n_random + n_test]}
    entry: dict[str, Any] = {"random_inputs": n_random, "test_samples": n_test, "layout": "PyTorch"}
    for key, name in REFERENCE_FILES.items():
        path = out_dir / name
        np.save(path, np.ascontiguousarray(arrays[key]), allow_pickle=False)
        entry[key] = {"file": name, "shape": list(arrays[key].shape), "dtype": arrays[key].dtype.name,
                      "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return entry


def _manifest(
    run: LoadedRun, dataset: Dataset, artifacts: list[dict[str, Any]], verification: dict[str, Any],
) -> dict[str, Any]:
    cfg, cost = run.config, model_cost(run.config)
    if cfg.kind == "vision":
        # Per input channel; each artifact's inputs state their own layout and colour.
        preprocessing = {"scale": 1 / 255, "mean": list(dataset.mean), "std": list(dataset.std)}
    else:
        tokenizer = run.tokenizer
        preprocessing = {
            "tokenizer": "tokenizer.json", "max_length": tokenizer.max_length,
            "pad_id": tokenizer.pad_id, "unk_id": tokenizer.unk_id, "case": CASES,
            "delimiter": DELIMITER, "delimiter_re2": DELIMITER_RE2,
        }
    outputs = {"logits": "raw logits, one per class in `labels` order: apply softmax for "
                         "probabilities", "labels_file": app.LABELS_FILE}
    return {
        "schema": mf.SCHEMA, "payattn_version": payattn.__version__, "created": mf.utc_now(),
        "mechanism": cfg.mechanism, "task": run.run_config.get("task"),
        "preset": run.run_config.get("preset"), "kind": cfg.kind, "config": cfg.to_dict(),
        "params": sum(p.numel() for p in run.model.parameters()),
        "attention_params": cost.attention_params, "flops": cost.flops,
        "attention_flops": cost.attention_flops, "labels": list(dataset.labels),
        "preprocessing": preprocessing, "outputs": outputs, "artifacts": artifacts,
        "verification": verification,
        "versions": mf.versions(), "export_seconds": None,
    }


class PartialExport(PayattnError):
    """Some reduced precisions failed verification: the artifact dir was written (whole, and
    atomically) with every other artifact, and `manifest` describes it."""

    def __init__(self, out_dir: Path, manifest: Manifest, dropped: dict[str, list[str]], kept: list[str]) -> None:
        self.manifest, self.dropped = manifest, dropped
        names = ", ".join(dropped)
        super().__init__(
            f"export wrote {out_dir} without {names}, which failed verification: "
            f"{'; '.join(m for ms in dropped.values() for m in ms)}; every other artifact passed. "
            f"Drop {names} (--precision {','.join(kept)}) to export without this error, or train "
            f"longer: near-tied logits are what quantisation flips")


def check_export_target(out_dir: Path, force: bool) -> None:
    """Refuse to overwrite an existing dir without `force`, or anything but an artifact dir with it."""
    check_target(out_dir, force, ARTIFACT_FILES, "artifact dir")


@contextlib.contextmanager
def _step(name: str, say: Log, key: str, disk: Path | None = None) -> Iterator[None]:
    """Announce a step (pause point `export:KEY`); turn any failure in it into one PayattnError
    that names the step, and a full disk under `disk` into that plain fact."""
    say(name)
    pause_point(f"export:{key}")
    try:
        yield
    except Exception as exc:
        if disk is not None and _disk_full(exc, disk):
            raise PayattnError(f"export failed while {name}: no space left on the disk holding "
                               f"{disk.parent}; free space there or choose another --out") from None
        if isinstance(exc, PayattnError):
            raise PayattnError(f"export failed while {name}: {exc}") from None
        raise PayattnError(f"export failed while {name}: {type(exc).__name__}: {exc}") from exc


def _disk_full(exc: BaseException, disk: Path) -> bool:
    """Whether a failure was a full disk: said so by errno, or next to no space is left (the
    converter runs in a child process whose out-of-space errors arrive as other messages)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(disk.parent).free < 4 << 20
    except OSError:
        return False


def _make_temp_dir(out_dir: Path) -> tuple[list[Path], Path]:
    """A fresh dir beside `out_dir` (same filesystem, so the final rename is atomic), after
    removing what killed exports left there. Returns the parent dirs this created, so a
    failed export can remove them again."""
    parent = out_dir.absolute().parent
    missing = [p for p in [parent, *parent.parents] if not p.exists()][::-1]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(parent)
        return missing, temp_dir_beside(out_dir.absolute())
    except OSError as exc:
        for p in reversed(missing):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise PayattnError(
            f"cannot write to {parent} ({exc.strerror or exc}); choose a writable --out"
        ) from None


def _discard(tmp: Path, created: list[Path]) -> None:
    """Remove a failed export's temp dir and the parent dirs it created."""
    shutil.rmtree(tmp, ignore_errors=True)
    for parent in reversed(created):
        with contextlib.suppress(OSError):
            parent.rmdir()
