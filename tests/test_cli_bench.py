"""`payattn bench` and `payattn report` from the command line, on tiny real artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from tiny_artifacts import copy_artifact_dirs
from typer.testing import CliRunner

from payattn.cli import app

runner = CliRunner()
QUICK = ["--runs", "3", "--warmup", "1", "--min-seconds", "0", "--warmup-seconds", "0"]


def test_bench_then_report(tmp_path: Path) -> None:
    dirs = copy_artifact_dirs(tmp_path / "artifacts")
    results = tmp_path / "results.jsonl"
    bench = runner.invoke(app, ["bench", str(dirs["vision"]), str(dirs["text"]),
                                "--results", str(results), *QUICK])
    assert bench.exit_code == 0, bench.output
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    # each dir holds one .onnx and one fp32 .tflite: two runtimes x two dirs
    assert len(lines) == 4 and {r["device"]["name"] for r in lines} == {"local"}
    assert bench.output.count(" p50 ") == 4
    report = runner.invoke(app, ["report", str(results), "--out", str(tmp_path / "rep")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "rep" / "report.html").is_file() and "report.md" in report.output


def test_unknown_device_fails_before_measuring(tmp_path: Path) -> None:
    dirs = copy_artifact_dirs(tmp_path / "artifacts")
    results = tmp_path / "results.jsonl"
    out = runner.invoke(app, ["bench", str(dirs["vision"]), "--device", "local,nowhere",
                              "--devices-file", str(tmp_path / "devices.toml"),
                              "--results", str(results), *QUICK])
    assert out.exit_code == 2, out.output
    assert "nowhere" in out.output and "Traceback" not in out.output
    assert not results.exists() or results.read_text() == ""


def test_bench_without_exports_says_what_to_run(tmp_path: Path) -> None:
    out = runner.invoke(app, ["bench", "--artifacts", str(tmp_path), "--mechanism", "efficient"])
    assert out.exit_code == 2
    assert "payattn export --mechanism efficient" in out.output


def test_bad_precision_is_clear(tmp_path: Path) -> None:
    out = runner.invoke(app, ["export", "--precision", "int4", "--out", str(tmp_path / "a")])
    assert out.exit_code == 2 and "unknown precision 'int4'" in out.output
    assert not (tmp_path / "a").exists()


def test_help_lists_the_commands_in_pipeline_order_and_version_prints() -> None:
    out = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    names = [line.split()[1] for line in out.output.splitlines()
             if line.startswith("│ ") and line[2] != " " and len(line.split()) > 2]
    pipeline = ["info", "tasks", "train", "export", "inspect", "verify", "bench", "report", "demo", "devices"]
    assert [n for n in names if n in pipeline] == pipeline
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("payattn ")


def test_report_reads_results_jsonl_by_default(tmp_path: Path, monkeypatch) -> None:
    dirs = copy_artifact_dirs(tmp_path / "artifacts")
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["bench", str(dirs["vision"]), *QUICK]).exit_code == 0
    out = runner.invoke(app, ["report"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "report" / "report.html").is_file()
