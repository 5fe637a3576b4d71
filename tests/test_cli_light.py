"""The light commands (`--help`, `tasks`, `devices`, `report`) never import torch or TensorFlow:
each runs in a fresh interpreter and reports the heavy modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEAVY = ("torch", "tensorflow", "onnx2tf", "onnx", "keras")
SCRIPT = """
import json, sys
heavy_names = json.loads(sys.argv[2])
sys.argv = ["payattn", *json.loads(sys.argv[1])]
from payattn.cli import app
try:
    app()
except SystemExit:
    pass
heavy = sorted(m for m in heavy_names if m in sys.modules)
print("HEAVY=" + json.dumps(heavy))
"""


def run_cli(*args: str) -> tuple[list[str], str, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(list(args)), json.dumps(HEAVY)],
                         capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    marker = [line for line in out.stdout.splitlines() if line.startswith("HEAVY=")]
    assert marker, out.stdout + out.stderr
    return json.loads(marker[-1][6:]), out.stdout, seconds


@pytest.fixture(scope="module")
def results_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_report import synthetic_lines, write_jsonl

    return write_jsonl(tmp_path_factory.mktemp("light") / "results.jsonl", synthetic_lines()[:8])


@pytest.mark.parametrize("args", [("--help",), ("tasks",), ("devices", "--help"), ("bench", "--help"),
                                  ("export", "--help"), ("sweep", "--help")])
def test_help_and_tasks_import_neither_torch_nor_tensorflow(args: tuple[str, ...]) -> None:
    heavy, stdout, _ = run_cli(*args)
    assert heavy == [] and ("Usage" in stdout or "mnist-5k" in stdout)


def test_devices_list_and_report_stay_light(tmp_path: Path, results_file: Path) -> None:
    heavy, stdout, _ = run_cli("devices", "list", "--devices-file", str(tmp_path / "devices.toml"))
    assert heavy == [] and "local" in stdout
    heavy, _, _ = run_cli("report", str(results_file), "--out", str(tmp_path / "report"))
    assert heavy == [] and (tmp_path / "report" / "report.html").is_file()


def test_piped_report_prints_whole_tables(tmp_path: Path, results_file: Path) -> None:
    heavy, stdout, _ = run_cli("report", str(results_file), "--out", str(tmp_path / "report"))
    assert heavy == [] and "…" not in stdout
    header = next(line for line in stdout.splitlines() if "mechanism" in line)
    assert "laptop · onnxruntime: p50 ms (speed-up)" in header and len(header) > 80


def test_export_summary_states_each_check_against_its_limit(tmp_path: Path) -> None:
    from rich.console import Console
    from tiny_artifacts import copy_artifact_dirs

    from payattn.views import PIPED_WIDTH, export_summary
    from payattn.runtime.artifacts import load_manifest

    directory = copy_artifact_dirs(tmp_path)["vision"]
    manifest = load_manifest(directory)
    manifest["verification"].update(max_abs_diff={"fp32": 1e-4}, min_top1_agreement={"int8": 0.98})
    manifest["artifacts"][0]["parity"].update(max_abs_diff=3.2e-6, top1_agreement=1.0)
    manifest["artifacts"][1]["parity"].update(max_abs_diff=2.5e-4, top1_agreement=0.99)
    out = Console(width=PIPED_WIDTH, record=True)
    out.print(export_summary([manifest]))
    text = out.export_text()
    onnx_row = next(line for line in text.splitlines() if "model.onnx" in line)
    tflite_row = next(line for line in text.splitlines() if "model_fp32.tflite" in line)
    assert "3.2e-06 ≤ 0.0001" in onnx_row and "100.0% (no floor)" in onnx_row and onnx_row.rstrip(" │").endswith("pass")
    assert "2.5e-04 ≤ 0.0001" in tflite_row and tflite_row.rstrip(" │").endswith("FAIL")
    assert " KiB" in onnx_row or " B " in onnx_row


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_artifacts import copy_artifact_dirs

    return copy_artifact_dirs(tmp_path_factory.mktemp("inspect"))["vision"] / "model_fp32.tflite"


@pytest.mark.parametrize("args", [("info",), ("info", "--preset", "imdb-paper", "--d-model", "64")])
def test_info_is_closed_form_arithmetic_without_torch(args: tuple[str, ...]) -> None:
    heavy, stdout, _ = run_cli(*args)
    assert heavy == [] and "efficient" in stdout and "model FLOPs" in stdout


def test_inspect_reads_a_tflite_without_torch_onnx_or_tensorflow(tflite_file: Path) -> None:
    heavy, stdout, _ = run_cli("inspect", str(tflite_file))
    assert heavy == [] and "operators (" in stdout and "XNNPACK" in stdout


def test_inspect_prints_no_runtime_notice(tflite_file: Path) -> None:
    out = subprocess.run([sys.executable, "-c", "from payattn.cli import app; app()", "inspect", str(tflite_file)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "signature" in out.stdout
    assert out.stderr == "", out.stderr  # LiteRT announces its delegate unless held back


FAKE_SETTING = """
import json, sys
from payattn import config
config.SHAPE_SETTINGS += (config.ShapeSetting("fake_width", "a width for this test", low=1, high=8),)
from typer.testing import CliRunner
from payattn.cli import app
from payattn.errors import PayattnError
from payattn.sweep import make_spec
helps = {c: CliRunner().invoke(app, [c, "--help"], env={"COLUMNS": "200"}).output
         for c in ("info", "train", "sweep", "export")}
spec = make_spec("mnist-5k", ["standard"], [0], options={"fake_width": [2, 3]})
try:
    make_spec("mnist-5k", ["standard"], [0], options={"fake_width": [9]})
    bound = None
except PayattnError as exc:
    bound = str(exc)
print(json.dumps({"helps": helps, "variants": [p.variant for p in spec.points()], "bound": bound}))
"""


def test_a_shape_setting_declared_once_reaches_every_command_and_the_sweep_grid() -> None:
    out = subprocess.run([sys.executable, "-c", FAKE_SETTING], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    for command, text in seen["helps"].items():
        assert "--fake-width" in text and "a width for this test" in text, command
    assert seen["variants"] == ["standard_fake-width-2", "standard_fake-width-3"]
    assert seen["bound"] == "--fake-width must be a whole number from 1 to 8, got 9"


def test_the_command_line_stays_thin() -> None:
    lines = (Path(__file__).resolve().parents[1] / "payattn" / "cli.py").read_text().splitlines()
    assert len(lines) < 400 and max(map(len, lines)) <= 100  # rendering lives in views.py
