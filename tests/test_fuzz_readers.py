"""Fuzzing the readers of untrusted files: seeded mutations of valid files, at least 500 per
format, each read as the commands read it. Every case must end read or refused with one
`error:` line: no traceback, no hang (a per-case bound), no native crash (the .tflite cases
run in a child process, which a crash would kill by a signal)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fuzzing import BINARY, TEXT, bounded, mutations, outcome, tally
from payattn import options as opt
from tiny_artifacts import copy_artifact_dirs

pytestmark = pytest.mark.slow  # about a minute for the five formats
CASES = 500  # per format
SEED = 20
TFLITE_SECONDS = 300  # the whole child batch
FIGURES = Path(os.environ.get("PAYATTN_FUZZ_FIGURES", os.devnull))  # where to record the tallies


def record(name: str, counts: dict, seconds: float) -> None:
    """Append one format's tally to PAYATTN_FUZZ_FIGURES (for docs/safety.md)."""
    if FIGURES != Path(os.devnull):
        with open(FIGURES, "a") as out:
            out.write(json.dumps({"format": name, "cases": sum(counts.values()), **counts,
                                  "seconds": round(seconds, 1)}) + "\n")


def check_all(name: str, outcomes: dict[str, str], started: float) -> None:
    broken = {case: o for case, o in outcomes.items() if o not in ("succeeded", "refused")}
    counts = tally(list(outcomes.values()))
    record(name, dict(counts), time.perf_counter() - started)
    assert len(outcomes) >= CASES
    assert not broken, f"{len(broken)} {name} case(s) broke the rule, e.g. {list(broken.items())[:3]}"
    assert counts["refused"], f"no {name} mutation was refused: the cases do not reach the reader"


@pytest.fixture(scope="module")
def vision(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny vision artifact dir, its .tflite made app-ready (signature, metadata, labels
    zip) as an export writes it, with reference inputs and outputs listed in its manifest."""
    from payattn.export.app import AppSpec, finish
    from payattn.runtime.parity import REFERENCE_FILES, litert_call, litert_interpreter, run_each

    directory = copy_artifact_dirs(tmp_path_factory.mktemp("fuzz"))["vision"]
    tflite = directory / "model_fp32.tflite"
    finish(tflite, AppSpec(name="tiny", description="fuzz seed", version="0", license="MIT",
                           input_name="pixels", output_name="logits", labels=list("abcde"),
                           color_space="RGB", mean=[127.5] * 3, std=[127.5] * 3))
    inputs = np.random.default_rng(0).standard_normal((4, 3, 4, 4)).astype(np.float32)
    outputs = run_each(litert_call(litert_interpreter(tflite), nhwc=True), inputs)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["reference"] = {"random_inputs": 2, "test_samples": 2, "layout": "PyTorch"}
    for key, array in (("inputs", inputs), ("outputs", outputs)):
        np.save(directory / REFERENCE_FILES[key], array)
        data = (directory / REFERENCE_FILES[key]).read_bytes()
        manifest["reference"][key] = {"file": REFERENCE_FILES[key], "shape": list(array.shape), "dtype": "float32",
                                      "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest["artifacts"] = [e for e in manifest["artifacts"] if e["format"] == "tflite"]
    entry = manifest["artifacts"][0]
    entry.update(bytes=tflite.stat().st_size, sha256=hashlib.sha256(tflite.read_bytes()).hexdigest())
    manifest["verification"]["max_abs_diff"] = {"fp32": 1e-4}
    (directory / "model.onnx").unlink()
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def test_mutated_tflite_files_are_read_or_refused_without_a_crash(vision: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    source = vision / "model_fp32.tflite"
    specs = json.loads((vision / "manifest.json").read_text())["artifacts"][0]["inputs"]
    (tmp_path / "specs.json").write_text(json.dumps(specs))
    for number, (kind, data) in enumerate(mutations(source.read_bytes(), CASES, SEED, BINARY)):
        (tmp_path / f"{number:04d}-{kind}.tflite").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)])}
    child = subprocess.run([sys.executable, str(Path(__file__).with_name("fuzzing.py")), str(tmp_path)],
                           capture_output=True, text=True, timeout=TFLITE_SECONDS, env=env)
    lines = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    done = {line["case"]: line for line in lines if "case" in line}
    started_last = [line["start"] for line in lines if "start" in line and line["start"] not in done]
    assert child.returncode == 0, (f"the child ended with {child.returncode} "
                                   f"({signal.Signals(-child.returncode).name if child.returncode < 0 else 'exit'}) "
                                   f"on {started_last}: {child.stderr[-2000:]}")
    check_all(".tflite by inspect", {case: line["inspect"] for case, line in done.items()}, started)
    check_all(".tflite by bench's LiteRT runner", {case: line["runner"] for case, line in done.items()}, started)


def reader_app(vision: Path) -> typer.Typer:
    """The readers as the commands call them, behind the CLI's own error handling."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    @opt.friendly_errors
    def verify(directory: Path) -> None:
        """What `payattn verify` reads: the manifest on the host, then the device's parity job."""
        from payattn.bench import build_job
        from payattn.pipeline import verify_precisions
        from payattn.runtime.parity import run_verify_job

        job = build_job([directory], ["litert"], verify_precisions([directory], "all"))
        run_verify_job({**job, "task": "verify"})

    @app.command()
    @opt.friendly_errors
    def report(results: Path) -> None:
        """What `payattn report` reads from a results file."""
        from payattn.report.results import latest, load_results

        latest(load_results(results))

    @app.command()
    @opt.friendly_errors
    def sweep(folder: Path) -> None:
        """What `payattn report --sweep` and `payattn sweep` read from a sweep folder."""
        from payattn.report.claims import load_sweep
        from payattn.sweep_index import read_index

        read_index(folder)
        load_sweep(folder)

    return app


def run_cases(app: typer.Typer, command: str, target: Path, path: Path, data: bytes, kinds: list,
              extra=lambda: None) -> dict[str, str]:
    original = path.read_bytes()
    runner = CliRunner()
    unmutated = runner.invoke(app, [command, str(target)])
    assert outcome(unmutated) == "succeeded", unmutated.stderr  # else every case is refused for free
    outcomes = {}
    try:
        for number, (kind, mutated) in enumerate(mutations(data, CASES, SEED, kinds)):
            path.write_bytes(mutated)
            extra()
            outcomes[f"{number} {kind}"] = bounded(lambda: outcome(runner.invoke(app, [command, str(target)])))
    finally:
        path.write_bytes(original)
        extra()
    return outcomes


def test_mutated_manifests_are_read_or_refused(vision: Path) -> None:
    started = time.perf_counter()
    path = vision / "manifest.json"
    outcomes = run_cases(reader_app(vision), "verify", vision, path, path.read_bytes(), TEXT)
    check_all("manifest.json", outcomes, started)


def test_mutated_reference_arrays_are_read_or_refused(vision: Path) -> None:
    """The .npy header and data mutated, the manifest's sha256 updated to match, as a crafted
    artifact dir would be: the npy reader itself must hold."""
    started = time.perf_counter()
    npy, manifest_path = vision / "reference_inputs.npy", vision / "manifest.json"
    manifest_text = manifest_path.read_text()

    def restamp() -> None:
        manifest = json.loads(manifest_text)
        manifest["reference"]["inputs"]["sha256"] = hashlib.sha256(npy.read_bytes()).hexdigest()
        manifest_path.write_text(json.dumps(manifest))

    head = npy.read_bytes()
    outcomes = run_cases(reader_app(vision), "verify", vision, npy, head, BINARY, restamp)
    manifest_path.write_text(manifest_text)
    check_all("reference .npy", outcomes, started)


def test_mutated_sweep_indexes_are_read_or_refused(vision: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    points = []
    for seed in (0, 1):
        run_dir = tmp_path / "runs" / "standard" / f"seed-{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"model": {"context_length": 16, "d_model": 64}}))
        (run_dir / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9, "params": 1000}))
        points.append({"id": f"standard/seed-{seed}", "variant": "standard", "run_dir": f"runs/standard/seed-{seed}",
                       "mechanism": "standard", "seed": seed, "setting": {}, "status": "done",
                       "test_accuracy": 0.9, "error": None, "seconds": 1.0, "where": "here"})
    spec = {"task": "mnist-5k", "mechanisms": ["standard"], "seeds": [0, 1], "presets": ["mnist-tiny"],
            "options": {}, "epochs": 1, "data_dir": None}
    index = tmp_path / "sweep.json"
    index.write_text(json.dumps({"schema": "payattn.sweep/1", "payattn_version": "0", "spec": spec,
                                 "points": points}, indent=2))
    outcomes = run_cases(reader_app(vision), "sweep", tmp_path, index, index.read_bytes(), TEXT)
    check_all("sweep.json", outcomes, started)


def test_mutated_result_lines_are_read_or_refused(vision: Path, tmp_path: Path) -> None:
    from test_report import synthetic_lines

    started = time.perf_counter()
    lines = [json.dumps(line).encode() for line in synthetic_lines()[:4]]
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    head = b"\n".join(lines[:-1]) + b"\n"
    app, runner, outcomes = reader_app(vision), CliRunner(), {}
    for number, (kind, mutated) in enumerate(mutations(lines[-1], CASES, SEED, TEXT)):
        path.write_bytes(head + mutated + b"\n")
        outcomes[f"{number} {kind}"] = bounded(lambda: outcome(runner.invoke(app, ["report", str(path)])))
    check_all("result line", outcomes, started)
