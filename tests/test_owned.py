"""Owned writes, one writer per output, and a spreadsheet-safe report.csv.

The table runs each attempt to write through what is not payattn's (a symbolic link, a file of
the user's, a user's folder named like a payattn file, a report payattn did not write) in-process
and asserts: exit code ≠ 0, one `error:` line naming the file, and not one file created or
changed. The lock tests run real concurrent processes: a writer stopped while it holds its lock
(PAYATTN_PAUSE_AT), a second that fails at once naming the holder's PID, a third that waits
(--wait) and, once the holder is SIGKILLed, takes its lock over and ends whole.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_report import line, write_jsonl
from tiny_artifacts import copy_artifact_dirs
from typer.testing import CliRunner

from payattn.bench import bench
from payattn.cli import app
from payattn.errors import PayattnError
from payattn.files import owned, write_file_atomic
from payattn.report import report, spreadsheet_safe
from payattn.runtime.settings import BenchSettings
from payattn.train import load_run, train

runner = CliRunner()
PAYATTN = [str(Path(sys.executable).with_name("payattn"))]
QUICK = ["--runs", "2", "--warmup", "0", "--min-seconds", "0", "--warmup-seconds", "0",
         "--runtime", "onnxruntime", "--threads", "1"]
R = "runs/mnist-5k/efficient"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run dir, tiny artifact dirs, a results file and a report, each real, beside
    a user's look-alikes of each."""
    root = tmp_path_factory.mktemp("owned")
    run = root / R
    train("mnist-5k", "efficient", run, epochs=1, overrides={"depth": 1})
    tiny = copy_artifact_dirs(root / "tiny")
    bench([tiny["vision"]], results_path=root / "results.jsonl", runtimes=["onnxruntime"],
          settings=BenchSettings(threads=(1,), runs=2, warmup_runs=0, min_seconds=0, warmup_seconds=0))
    report(root / "results.jsonl", root / "report")
    (root / "victim.txt").write_text("a system file's stand-in\n")
    (root / "link.jsonl").symlink_to(root / "victim.txt")
    (root / "notes.jsonl").write_text("my own notes\n")
    os.mkfifo(root / "fifo.jsonl")
    for name, plant in {
        "dir-named": lambda d: _user_dir(d / "metrics.json"),  # a user's folder, payattn's name
        "json-named": lambda d: (d / "config.json").write_text('{"mine": true}\n'),
        "link-named": lambda d: _relink(d / "model.pt", root / "victim.txt"),
    }.items():
        shutil.copytree(run, root / name / "mnist-5k" / "efficient")
        plant(root / name / "mnist-5k" / "efficient")
    art = root / "exp" / "mnist-5k" / "efficient"
    shutil.copytree(tiny["vision"], art)
    (art / "manifest.json").unlink()
    _user_dir(art / "manifest.json")
    (root / "user-report").mkdir()
    (root / "user-report" / "report.md").write_text("# my own report\n")
    shutil.copytree(root / "report", root / "link-report")
    _relink(root / "link-report" / "report.csv", root / "victim.txt")
    shutil.copytree(root / "report", root / "dir-report")
    (root / "dir-report" / "plots" / "latency-x.png").mkdir()
    return root


def _user_dir(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()
    (path / "thesis.tex").write_text("a user's work")


def _relink(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root (links not followed) with its kind and content hash."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                seen[str(path)] = ("link", os.readlink(path))
            elif path.is_file():
                seen[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                seen[str(path)] = ("other", path.lstat().st_mode)
    return seen


B = f"bench tiny/vision {' '.join(QUICK)}"
CASES = [
    # a results file that is not payattn's is never appended to
    (f"{B} --results link.jsonl", "results file link.jsonl is a symbolic link"),
    (f"{B} --results notes.jsonl", "results file notes.jsonl is not payattn's: line 1"),
    (f"{B} --results fifo.jsonl", "results file fifo.jsonl is not a regular file"),
    # --force replaces a run or artifact dir only when every file is payattn's by type and content
    ("train -m efficient --epochs 1 --depth 1 --out dir-named --force",
     "holds files payattn did not write (metrics.json: a folder)"),
    ("train -m efficient --epochs 1 --depth 1 --out json-named --force",
     "holds files payattn did not write (config.json: not payattn's content)"),
    ("train -m efficient --epochs 1 --depth 1 --out link-named --force",
     "holds files payattn did not write (model.pt: a symbolic link)"),
    (f"export --checkpoint {R} --out exp --precision fp32 --force",
     "holds files payattn did not write (manifest.json: a folder)"),
    # report writes over no report it did not write, and over its own only with --force
    ("report results.jsonl --out user-report", "user-report/report.md was not written by payattn"),
    ("report results.jsonl --out user-report --force", "user-report/report.md was not written by payattn"),
    ("report results.jsonl --out link-report --force", "report.csv was not written by payattn (a symbolic link)"),
    ("report results.jsonl --out dir-report --force", "holds files payattn did not write (latency-x.png: a folder)"),
    ("report results.jsonl --out report", "report already holds a report (report.md, report.csv"),
]


@pytest.mark.parametrize("line_, expected", CASES, ids=[c[0] for c in CASES])
def test_writing_through_what_is_not_payattns_is_one_clear_refusal(ws: Path, line_: str, expected: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws)
    before = snapshot(ws)
    result = runner.invoke(app, line_.split())
    lines = result.stderr.strip().splitlines()
    assert result.exit_code not in (0, None), result.stdout
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert snapshot(ws) == before  # nothing written, nothing deleted, the link's target untouched


def test_report_force_replaces_its_own_report(ws: Path, tmp_path: Path) -> None:
    out = shutil.copytree(ws / "report", tmp_path / "report")
    with pytest.raises(PayattnError, match="already holds a report"):
        report(ws / "results.jsonl", out)
    paths = report(ws / "results.jsonl", out, force=True)
    assert paths.md.read_text().startswith("# payattn report")
    assert sorted(p.name for p in out.iterdir()) == ["plots", "report.csv", "report.html", "report.md"]


def test_owned_judges_type_and_content_never_the_name(ws: Path, tmp_path: Path) -> None:
    real = [*(ws / R).iterdir(), *(ws / "tiny" / "vision").iterdir(), *(ws / "report").glob("report.*"),
            *(ws / "report" / "plots").iterdir()]
    assert {p.suffix for p in real} >= {".pt", ".json", ".onnx", ".tflite", ".md", ".csv", ".html", ".png"}
    for path in real:
        assert owned(path), path
        fake = tmp_path / "fake" / path.name
        fake.parent.mkdir(exist_ok=True)
        fake.write_bytes(b"{}" if path.suffix == ".json" else b"not payattn's")
        assert not owned(fake), fake  # the right name with other content
        fake.unlink()
        fake.symlink_to(path)
        assert not owned(fake), fake  # a link, even to a real payattn file
        fake.unlink()
        fake.mkdir()
        assert not owned(fake), fake  # a folder with payattn's name
        fake.rmdir()
    assert not owned(ws / "victim.txt")  # a name payattn does not write


def test_atomic_writes_follow_no_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / ".manifest.json.tmp").symlink_to(victim)  # the old fixed temp name, planted
    write_file_atomic(tmp_path / "manifest.json", "{}")
    assert victim.read_text() == "keep" and (tmp_path / "manifest.json").read_text() == "{}"
    (tmp_path / "link.json").symlink_to(victim)
    with pytest.raises(PayattnError, match="link.json is a symbolic link"):
        write_file_atomic(tmp_path / "link.json", "{}")
    assert victim.read_text() == "keep"


# ---- report.csv is spreadsheet-safe ----------------------------------------------------------

SPREADSHEET = [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+2", "'+1+2"),
               ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"), ("@SUM(A1)", "'@SUM(A1)"),
               ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("Cortex-A76", "Cortex-A76"),
               (-1.5, -1.5), (-3, -3), ("-1.5", "-1.5"), ("+2e-3", "+2e-3"), (0.25, 0.25), ("", "")]


@pytest.mark.parametrize("cell, expected", SPREADSHEET)
def test_a_formula_cell_is_escaped_and_a_number_is_left_alone(cell, expected) -> None:
    assert spreadsheet_safe(cell) == expected


def test_device_names_reach_report_csv_escaped(tmp_path: Path) -> None:
    evil = line("standard", "laptop", "onnxruntime", "onnx", "fp32", "model.onnx")
    evil["device"] = dict(evil["device"], cpu="=HYPERLINK(\"http://x\")", os="+1+2", arch="-2+3+cmd",
                          name="@evil")
    paths = report(write_jsonl(tmp_path / "results.jsonl", [evil]), tmp_path / "report")
    with paths.csv.open(newline="", encoding="utf-8") as handle:
        header, row = list(csv.reader(handle))
    cells = dict(zip(header, row))
    assert (cells["device_cpu"], cells["device_os"], cells["device_arch"], cells["device_name"]) == (
        "'=HYPERLINK(\"http://x\")", "'+1+2", "'-2+3+cmd", "'@evil")
    assert cells["latency_ms_p50"] == str(evil["latency_ms"]["p50"]) and cells["params"] == "12000"
    assert not [c for c in row if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


# ---- one writer per output: real concurrent processes ----------------------------------------


def start(args: list[str], cwd: Path, err: Path, pause: str | None = None) -> subprocess.Popen:
    """Start the CLI with stderr to `err`; with `pause`, return once it stopped there."""
    marker = err.with_suffix(".paused")
    env = dict(os.environ, PAYATTN_PAUSE_AT=pause or "", PAYATTN_PAUSE_FILE=str(marker))
    proc = subprocess.Popen(PAYATTN + args, cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=err.open("w"))
    deadline = time.monotonic() + 300
    while pause and not marker.exists():
        assert proc.poll() is None, f"exited {proc.returncode} before {pause}: {err.read_text()}"
        assert time.monotonic() < deadline, f"{pause} was never reached"
        time.sleep(0.05)
    return proc


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while text not in path.read_text():
        assert proc.poll() is None, f"exited {proc.returncode}: {path.read_text()}"
        assert time.monotonic() < deadline, f"{text!r} never appeared: {path.read_text()}"
        time.sleep(0.05)


def refused_then_waited(args: list[str], cwd: Path, pause: str = "lock:held",
                        resume: bool = False) -> subprocess.CompletedProcess:
    """A holds the lock (stopped at `pause`); B fails at once naming A's PID; C waits (--wait).
    Then A is SIGKILLed, and C must take its lock over, or (`resume`) A goes on and ends first.
    Returns C's outcome."""
    holder = start(args, cwd, cwd / "a.err", pause)
    try:
        started = time.monotonic()
        refused = subprocess.run(PAYATTN + args, cwd=cwd, capture_output=True, text=True, timeout=300)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode != 0 and len(lines) == 1, refused.stderr
        assert lines[0].startswith("error: ") and "is being written by another payattn process" in lines[0]
        assert f"(PID {holder.pid}," in lines[0] and "pass --wait" in lines[0], lines[0]
        assert time.monotonic() - started < 120  # at once: no waiting, no work
        waiter = start([*args, "--wait"], cwd, cwd / "c.err")
        wait_for_text(cwd / "c.err", f"another payattn process (PID {holder.pid}", waiter)
        time.sleep(1)
        assert waiter.poll() is None  # waiting, not failing
    finally:
        if resume:
            (cwd / "a.paused").unlink()
            assert holder.wait(timeout=600) == 0, (cwd / "a.err").read_text()
        else:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)
    waiter.wait(timeout=600)
    text = (cwd / "c.err").read_text()
    took_over = f"from process {holder.pid}, which ended without releasing it" in text
    assert took_over != resume, text
    return subprocess.CompletedProcess(args, waiter.returncode, "", text)


def no_lock_left(root: Path) -> None:
    assert not [p for p in root.rglob("*.lock")], "a lock file was left behind"


@pytest.mark.slow
def test_train_refuses_waits_and_rechecks_under_the_lock(ws: Path, tmp_path: Path) -> None:
    args = ["train", "-m", "efficient", "--epochs", "1", "--depth", "1", "--out", "runs"]
    # The holder goes on and writes its run dir: the waiter, checking again under the lock,
    # finds it there and refuses instead of replacing it.
    done = refused_then_waited(args, tmp_path, pause="train:fit", resume=True)
    assert done.returncode != 0, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: run dir runs/mnist-5k/efficient already exists")
    assert load_run(tmp_path / R).config.mechanism == "efficient"  # the first writer's, whole
    no_lock_left(tmp_path)


@pytest.mark.slow
def test_export_refuses_a_second_writer_and_a_waiter_takes_a_dead_holders_lock(ws: Path, tmp_path: Path) -> None:
    args = ["export", "--checkpoint", str(ws / R), "--out", "art", "--precision", "fp32"]
    done = refused_then_waited(args, tmp_path)
    assert done.returncode == 0, done.stderr
    target = tmp_path / "art" / "mnist-5k" / "efficient"
    manifest = json.loads((target / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        assert hashlib.sha256((target / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["efficient"]  # no temp dir, no lock
    no_lock_left(tmp_path)


@pytest.mark.slow
def test_sweep_refuses_a_second_writer_and_a_waiter_takes_a_dead_holders_lock(tmp_path: Path) -> None:
    args = ["sweep", "-m", "efficient", "--seeds", "1", "--epochs", "1", "--depth", "1",
            "--workers", "1", "--out", "sw"]
    done = refused_then_waited(args, tmp_path)
    assert done.returncode == 0, done.stderr
    index = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [(p["mechanism"], p["seed"], p["status"]) for p in index["points"]] == [("efficient", 0, "done")]
    no_lock_left(tmp_path)


@pytest.mark.slow
def test_bench_refuses_a_second_writer_and_a_waiter_takes_a_dead_holders_lock(ws: Path, tmp_path: Path) -> None:
    args = ["bench", str(ws / "tiny" / "vision"), "--results", "r.jsonl", *QUICK]
    done = refused_then_waited(args, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["schema"] == "payattn.result/1"
    no_lock_left(tmp_path)


@pytest.mark.slow
def test_report_refuses_a_second_writer_and_a_waiter_takes_a_dead_holders_lock(ws: Path, tmp_path: Path) -> None:
    args = ["report", str(ws / "results.jsonl"), "--out", "rep"]
    done = refused_then_waited(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rep" / "report.md").read_text().startswith("# payattn report")
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["plots", "report.csv", "report.html",
                                                                     "report.md"]


@pytest.mark.slow
def test_two_benches_at_once_append_whole_lines_of_both(ws: Path, tmp_path: Path) -> None:
    args = ["bench", str(ws / "tiny" / "vision"), str(ws / "tiny" / "text"), "--results", "r.jsonl",
            "--wait", *QUICK]
    procs = [start(args, tmp_path, tmp_path / f"{i}.err") for i in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [(tmp_path / f"{i}.err").read_text() for i in range(2)]
    lines = [json.loads(text) for text in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 4  # 2 artifacts × 2 writers, none lost, none torn
    # never interleaved: each writer's lines are together (one run's timestamps, in order)
    assert [line_["artifact"]["file"] for line_ in lines][:2] == [line_["artifact"]["file"] for line_ in lines][2:]
    no_lock_left(tmp_path)


@pytest.mark.slow
def test_two_sweeps_at_once_into_one_folder_keep_both_in_the_index(tmp_path: Path) -> None:
    common = ["sweep", "--seeds", "1", "--epochs", "1", "--depth", "1", "--workers", "1", "--out", "sw", "--wait"]
    procs = [start([*common, "-m", mech], tmp_path, tmp_path / f"{mech}.err") for mech in ("efficient", "super")]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [p.read_text() for p in tmp_path.glob("*.err")]
    index = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert sorted((p["mechanism"], p["status"]) for p in index["points"]) == [("efficient", "done"),
                                                                              ("super", "done")]
    for point in index["points"]:
        assert load_run(tmp_path / "sw" / point["run_dir"]).config.mechanism == point["mechanism"]
    no_lock_left(tmp_path)
