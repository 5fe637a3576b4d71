"""Safe by default: bad input and faults across every command.

The table runs each bad input in-process in a workspace of real files (a trained run dir,
damaged copies of it, tiny artifact dirs, results files, device registries) and asserts: exit
code ≠ 0, exactly one line on stderr naming the thing and the fix, no traceback, and not one
file created or changed. The fault tests run the CLI as a child process, stop it at a named
step (PAYATTN_PAUSE_AT) and SIGKILL it there, fill small tmpfs disks, and mount read-only
targets.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_artifacts import copy_artifact_dirs
from typer.testing import CliRunner

from payattn.bench import bench
from payattn.cli import app
from payattn.export import ARTIFACT_FILES
from payattn.runtime.settings import BenchSettings
from payattn.train import load_run, train

runner = CliRunner()
QUICK = ["--runs", "2", "--warmup", "0", "--min-seconds", "0", "--warmup-seconds", "0"]
PAYATTN = [str(Path(sys.executable).with_name("payattn"))]


# ---- the workspace ------------------------------------------------------------------------


def damaged_run(good: Path, target: Path, change) -> None:
    shutil.copytree(good, target)
    config = json.loads((target / "config.json").read_text())
    text = change(config)
    (target / "config.json").write_text(text if isinstance(text, str) else json.dumps(config))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    good = root / "runs" / "mnist-5k" / "efficient"
    train("mnist-5k", "efficient", good, epochs=1, overrides={"depth": 1})
    damaged_run(good, root / "run-truncated", lambda c: json.dumps(c)[:40])
    damaged_run(good, root / "run-incomplete", lambda c: c.pop("model") and None)
    damaged_run(good, root / "run-selfmismatch", lambda c: c.update(mechanism="standard"))
    damaged_run(good, root / "run-shape", lambda c: c["model"].update(d_model=32))
    damaged_run(good, root / "run-unknown-task", lambda c: c.update(task="mnist-9k"))
    shutil.copytree(good, root / "run-corrupt")
    (root / "run-corrupt" / "model.pt").write_bytes(b"not a checkpoint")
    user_run = root / "user-runs" / "mnist-5k" / "efficient"
    user_run.mkdir(parents=True)
    (user_run / "notes.txt").write_text("mine")
    user_art = root / "exp" / "mnist-5k" / "efficient"
    user_art.mkdir(parents=True)
    (user_art / "notes.txt").write_text("mine")
    tiny = copy_artifact_dirs(root / "tiny")
    bench([tiny["vision"]], results_path=root / "results.jsonl",
          settings=BenchSettings(runs=2, warmup_runs=0, min_seconds=0, warmup_seconds=0))
    (root / "foreign.jsonl").write_text('{"mine": 1}\n{"half": ')
    (root / "bad.jsonl").write_text("not json\n")
    (root / "empty.jsonl").write_text("")
    (root / "a-file").write_text("a file, not a folder")
    (root / "a-dir").mkdir()
    (root / "empty-data").mkdir()
    tomls = {
        "port": '[devices.pi]\nkind = "ssh"\nhost = "pi.local"\nport = "22"\n',
        "kind": '[devices.pi]\nkind = "usb"\nhost = "pi.local"\n',
        "user": '[devices.pi]\nkind = "ssh"\nhost = "pi.local"\nuser = "-oProxyCommand=touch /tmp/x"\n',
        "name": '[devices.A]\nkind = "ssh"\nhost = "pi.local"\n',
        "broken": '[devices.pi\nkind = "ssh"\n',
        "serial": '[devices.ph]\nkind = "adb"\nserial = "-s x"\nbenchmark_model = "/bin/true"\n',
    }
    for name, text in tomls.items():
        (root / f"{name}.toml").write_text(text)
    (root / "demo-existing").mkdir()
    (root / "demo-existing" / "mine.txt").write_text("mine")
    (root / "demo-foreign").mkdir()
    (root / "demo-foreign" / "results.jsonl").write_text('{"mine": 1}\n')
    (root / "demo-userrun" / "runs" / "mnist-5k" / "standard").mkdir(parents=True)
    (root / "demo-userrun" / "runs" / "mnist-5k" / "standard" / "notes.txt").write_text("mine")
    (root / "user-report" / "plots").mkdir(parents=True)
    (root / "user-report" / "plots" / "mine.png").write_bytes(b"a user's picture")
    (root / "config").mkdir()
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size, mtime and content hash."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            stat = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
            seen[str(path.relative_to(root))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns, digest)
    return seen


# ---- the table: (command line, what the one line must say) --------------------------------

R = "runs/mnist-5k/efficient"
V = "tiny/vision"
CASES = [
    # info
    ("info --preset nope", "unknown preset 'nope'"),
    ("info --d-model 0", "--d-model must be a whole number from 1 to 4,096, got 0"),
    ("info --heads 0", "--heads must be a whole number from 1"),
    ("info --depth -1", "--depth must be a whole number from 1 to 64, got -1"),
    ("info --preset imdb-paper --context-length 0", "--context-length must be a whole number from 1"),
    ("info --d-model 100000", "--d-model must be a whole number from 1 to 4,096"),
    ("info --d-model 64 --heads 3", "not divisible by heads=3"),
    ("info --patch-size 5", "must be a multiple of patch size 5"),
    ("info --mlp-dim abc", "Invalid value for '--mlp-dim'"),
    # sweep
    ("sweep -m fast --out new-sweep", "unknown mechanism 'fast'; valid mechanisms"),
    ("sweep --task mnist-9k --out new-sweep", "unknown task 'mnist-9k'"),
    ("sweep --seeds two --out new-sweep", "--seeds 'two': give a count"),
    ("sweep --seeds 1,1 --out new-sweep", "--seeds must give distinct seeds"),
    ("sweep --heads 1,0 --out new-sweep", "--heads must be a whole number from 1"),
    ("sweep --preset imdb-paper --out new-sweep", "preset 'imdb-paper' is a text model"),
    ("sweep --ray 127.0.0.1:1 --out new-sweep", "cannot connect to the Ray cluster at '127.0.0.1:1'"),
    ("report --sweep new-sweep", "cannot read the sweep index new-sweep"),
    ("export --sweep new-sweep", "cannot read the sweep index new-sweep"),
    # train
    ("train -m fast --out new-runs", "unknown mechanism 'fast'; valid mechanisms"),
    ("train --task mnist-9k --out new-runs", "unknown task 'mnist-9k'"),
    ("train --threads 0 --out new-runs", "--threads must be a whole number from 1 to 256, got 0"),
    ("train --threads -2 --out new-runs", "--threads must be a whole number from 1 to 256, got -2"),
    ("train --threads 100000 --out new-runs", "--threads must be a whole number from 1 to 256"),
    ("train --d-model 0 --out new-runs", "--d-model must be a whole number"),
    ("train --heads 0 --out new-runs", "--heads must be a whole number"),
    ("train --depth -1 --out new-runs", "--depth must be a whole number"),
    ("train --task movie-reviews --context-length 0 --out new-runs", "--context-length must be"),
    ("train --task movie-reviews --max-vocab 2 --out new-runs", "--max-vocab must be a whole number from 4"),
    ("train --epochs 0 --out new-runs", "--epochs must be a whole number from 1"),
    ("train --seed -1 --out new-runs", "--seed must be a whole number from 0"),
    ("train --preset nope --out new-runs", "unknown preset 'nope'"),
    ("train -m efficient --task movie-reviews --preset mnist-tiny --out new-runs", "choose a text preset"),
    ("train --task mnist --data-dir empty-data --out new-runs", "train-images-idx3-ubyte.gz"),
    ("train -m efficient --out runs", "already exists; pass --force"),
    ("train -m efficient --out user-runs --force", "holds files payattn did not write (notes.txt)"),
    ("train -m efficient --out a-file", "a-file is a file, not a folder; choose another --out"),
    ("train -m efficient --out a-file/runs", "a-file is a file, not a folder"),
    ("train --threads two", "Invalid value for '--threads'"),
    # export
    ("export --precision int4 --out new-art", "unknown precision 'int4'"),
    ("export --precision , --out new-art", "unknown precision none"),
    ("export --checkpoint nowhere --out new-art", "nowhere/config.json is missing"),
    ("export --checkpoint run-truncated --out new-art", "config.json: not valid JSON"),
    ("export --checkpoint run-incomplete --out new-art", "config.json is incomplete: no model"),
    ("export --checkpoint run-selfmismatch --out new-art", "config.json disagrees with itself"),
    ("export --checkpoint run-unknown-task --out new-art", "task 'mnist-9k'"),
    ("export --checkpoint run-shape --out new-art", "config.json disagrees with run-shape/model.pt"),
    ("export --checkpoint run-corrupt --out new-art", "model.pt could not be loaded"),
    (f"export --checkpoint {R} -m standard --out new-art", "holds a efficient model, not standard"),
    (f"export --checkpoint {R} --out exp", "exp/mnist-5k/efficient already exists; pass --force"),
    (f"export --checkpoint {R} --out exp --force", "holds files payattn did not write (notes.txt)"),
    (f"export --checkpoint {R} --out a-file/art", "a-file is a file, not a folder"),
    ("export -m efficient --runs-dir runs --out new-art", "holds another model (epochs=1 (asked 15)"),
    ("export -m efficient --task mnist-9k --out new-art", "unknown task 'mnist-9k'"),
    ("export -m fast --out new-art", "unknown mechanism 'fast'"),
    ("export --runs runs", "No such option: --runs"),
    # bench
    (f"bench {V} --runs 0", "--runs must be a whole number from 1 to 1,000,000, got 0"),
    (f"bench {V} --runs -5", "--runs must be a whole number from 1 to 1,000,000, got -5"),
    (f"bench {V} --runs 99999999999999999999", "--runs must be a whole number from 1 to 1,000,000"),
    (f"bench {V} --warmup -1", "--warmup must be a whole number from 0 to 100,000, got -1"),
    (f"bench {V} --min-seconds -1", "--min-seconds must be a number of seconds from 0 to 3,600"),
    (f"bench {V} --min-seconds nan", "--min-seconds must be a number of seconds"),
    (f"bench {V} --warmup-seconds inf", "--warmup-seconds must be a number of seconds"),
    (f"bench {V} --timeout 0", "--timeout must be a number of seconds from 1"),
    (f"bench {V} --threads 0", "--threads must be a whole number from 1 to 256, got 0"),
    (f"bench {V} --threads 100000", "--threads must be a whole number from 1 to 256, got 100000"),
    (f"bench {V} --threads 1,x", "--threads takes whole numbers separated by commas"),
    (f"bench {V} --threads ,", "--threads takes whole numbers separated by commas, got ','"),
    (f"bench {V} --runtime tvm", "unknown runtime 'tvm'"),
    (f"bench {V} --precision int4", "unknown precision 'int4'"),
    (f"bench {V} --device nowhere --devices-file config/none.toml", "unknown device 'nowhere'"),
    (f"bench {V} --results a-dir", "results file a-dir is a directory"),
    (f"bench {V} --results foreign.jsonl", "foreign.jsonl is not payattn's: line 1 is not a result line"),
    (f"bench {V} --results a-file/results.jsonl", "a-file is a file, not a folder"),
    ("bench nowhere", "nowhere does not exist; export the model again"),
    ("bench --artifacts a-dir -m efficient", "payattn export --mechanism efficient"),
    ("bench -m fast", "unknown mechanism 'fast'"),
    ("bench --accelerator cpu,npu", "unknown accelerator 'npu': --accelerator takes cpu, gpu or cpu,gpu"),
    ("bench --ca-file nowhere.pem", "--ca-file nowhere.pem does not exist"),
    (f"bench {V} --device pi --devices-file a-dir", "is not a file; pass a file path to --devices-file"),
    (f"bench {V} --device pi --devices-file port.toml", "port must be an integer 1-65535 without quotes"),
    (f"bench {V} --device pi --devices-file kind.toml", 'kind must be "ssh" or "adb", not \'usb\''),
    (f"bench {V} --device pi --devices-file user.toml", "is not a valid login name"),
    (f"bench {V} --device A --devices-file name.toml", "[devices.A] in name.toml: invalid device name 'A'"),
    (f"bench {V} --device pi --devices-file broken.toml", "cannot read the device registry broken.toml"),
    (f"bench {V} --device ph --devices-file serial.toml", "is not an adb serial"),
    # verify
    ("verify nowhere", "nowhere"),
    (f"verify {V} --timeout 0", "--timeout must be a number of seconds from 1"),
    (f"verify {V} --runtime tvm", "unknown runtime 'tvm'"),
    (f"verify {V} --precision int4", "unknown precision 'int4'"),
    (f"verify {V} --device ghost --devices-file config/d.toml", "unknown device 'ghost'"),
    # report
    ("report nowhere.jsonl", "results file nowhere.jsonl not found"),
    ("report a-dir", "results file a-dir is a directory"),
    ("report bad.jsonl", "bad.jsonl:1: not valid JSON"),
    ("report empty.jsonl", "holds no result lines"),
    ("report results.jsonl --out a-file", "report folder a-file is a file"),
    ("report results.jsonl --out a-file/report", "a-file is a file, not a folder"),
    ("report results.jsonl --out user-report", "user-report/plots holds files payattn did not write (mine.png)"),
    # demo
    ("demo --out . --force", "holds your own files; give a dedicated folder"),
    ("demo --out .. --force", "holds your own files"),
    ("demo --out demo-existing", "demo-existing already exists; pass --force"),
    ("demo --out a-file --force", "a-file exists and is not a folder"),
    ("demo --out demo-foreign --force", "results.jsonl holds lines payattn did not write"),
    ("demo --out demo-userrun --force", "holds files payattn did not write (notes.txt)"),
    ("demo --out new-demo --runs 0", "--runs must be a whole number from 1"),
    ("demo --out new-demo --min-seconds nan", "--min-seconds must be a number of seconds"),
    ("demo --out new-demo --precision int4", "unknown precision 'int4'"),
    ("demo --out new-demo --epochs 0", "--epochs must be a whole number from 1"),
    # devices
    ("devices add pi --ssh -oProxyCommand=x@host --devices-file config/d.toml", "invalid SSH user"),
    ("devices add pi --ssh pi@host:99999 --devices-file config/d.toml", "invalid SSH port"),
    ("devices add Pi --ssh pi@host --devices-file config/d.toml", "invalid device name 'Pi'"),
    ("devices add pi --devices-file config/d.toml", "give exactly one of --ssh"),
    ("devices add local --ssh pi@host --devices-file config/d.toml", "reserved for this machine"),
    ("devices add ph --adb SERIAL --benchmark-model nowhere --devices-file config/d.toml",
     "benchmark_model binary nowhere does not exist"),
    ("devices add pi --ssh pi@host --devices-file a-dir", "is not a file"),
    ("devices add pi --ssh pi@host --devices-file a-file/d.toml", "cannot write the device registry"),
    ("devices remove ghost --devices-file port.toml", "no device named 'ghost' in port.toml; stored devices: pi"),
    ("devices remove local", "cannot be removed"),
    ("devices list --devices-file broken.toml", "cannot read the device registry broken.toml"),
    ("devices check ghost --devices-file config/d.toml", "unknown device 'ghost'"),
    # the app itself
    ("nosuchcommand", "No such command 'nosuchcommand'"),
    ("bench --no-such-option", "No such option: --no-such-option"),
]


@pytest.mark.parametrize("line,expected", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(ws: Path, line: str, expected: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(ws / "config"))
    before = snapshot(ws)
    result = runner.invoke(app, line.split())
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr
    assert snapshot(ws) == before


def test_the_table_covers_every_command() -> None:
    commands = {line.split()[0] for line, _ in CASES}
    assert {"info", "train", "sweep", "export", "verify", "bench", "report", "demo", "devices"} <= commands
    assert len(CASES) >= 60


# ---- SIGKILL at each step -----------------------------------------------------------------


def start_paused(args: list[str], point: str, cwd: Path, marker: Path) -> subprocess.Popen:
    """Start the CLI so that it stops at `point`; return once it is there."""
    env = dict(os.environ, PAYATTN_PAUSE_AT=point, PAYATTN_PAUSE_FILE=str(marker))
    proc = subprocess.Popen(PAYATTN + args, cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{point}: exited {proc.returncode} before pausing: {proc.stderr.read()!r}")
        assert time.monotonic() < deadline, f"{point} was never reached"
        time.sleep(0.05)
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()


def complete_artifact_dir(directory: Path) -> dict:
    """The manifest of a whole artifact dir: every listed file there with its sha256."""
    manifest = json.loads((directory / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        data = (directory / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
    assert {p.name for p in directory.iterdir()} <= set(ARTIFACT_FILES)
    return manifest


EXPORT_STEPS = ["export:load", "export:data", "export:onnx", "export:onnx-app", "export:tflite", "export:ops",
                "export:metadata", "export:verify", "export:manifest", "export:move", "export:swap",
                "export:swapped"]


@pytest.mark.slow
def test_sigkill_at_each_export_step_keeps_a_whole_dir(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "art"
    args = ["export", "--checkpoint", str(ws / R), "--out", str(out), "--precision", "fp32", "--force"]
    subprocess.run(PAYATTN + args, check=True, capture_output=True, cwd=tmp_path)
    target = out / "mnist-5k" / "efficient"
    created = {complete_artifact_dir(target)["created"]}
    for point in EXPORT_STEPS:
        kill(start_paused(args, point, tmp_path, tmp_path / f"{point}.paused"))
        created.add(complete_artifact_dir(target)["created"])  # the old dir, or the new one
    assert [p for p in target.parent.iterdir() if p.name != "efficient"], "no leftover to clean"
    done = subprocess.run(PAYATTN + args, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in target.parent.iterdir()] == ["efficient"]  # leftovers of the kills are gone
    complete_artifact_dir(target)


@pytest.mark.slow
def test_sigkill_at_each_train_force_step_keeps_a_whole_run(tmp_path: Path) -> None:
    args = ["train", "-m", "super", "--epochs", "1", "--depth", "1", "--out", "runs", "--force"]
    subprocess.run(PAYATTN + args, check=True, capture_output=True, cwd=tmp_path)
    target = tmp_path / "runs" / "mnist-5k" / "super"
    for point in ("train:fit", "train:swap", "train:swapped"):
        kill(start_paused(args, point, tmp_path, tmp_path / f"{point}.paused"))
        assert load_run(target).config.mechanism == "super"  # whole: old or new
        assert {p.name for p in target.iterdir()} == {"model.pt", "config.json", "metrics.json"}
    assert len(list(target.parent.iterdir())) > 1, "the kills left no temp dir to clean"
    subprocess.run(PAYATTN + args, check=True, capture_output=True, cwd=tmp_path)
    assert [p.name for p in target.parent.iterdir()] == ["super"]


def children(pid: int, marker: bytes) -> list[int]:
    """The child processes of `pid` whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and marker in cmdline:
            found.append(int(entry.name))
    return found


def harness_children(pid: int) -> list[int]:
    return children(pid, b"payattn.runtime")


def wait_gone(pids: list[int], marker: bytes, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while any(Path(f"/proc/{pid}").exists() and marker in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids):
        assert time.monotonic() < deadline, f"{marker!r} outlived its killed parent"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_export_takes_its_converter_along(ws: Path, tmp_path: Path) -> None:
    args = ["export", "--checkpoint", str(ws / R), "--out", str(tmp_path / "art"), "--precision", "fp32"]
    proc = subprocess.Popen(PAYATTN + args, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (converters := children(proc.pid, b"tflite.py")):
        assert time.monotonic() < deadline and proc.poll() is None, "the converter never started"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)  # the export only, not its process group
    proc.wait(timeout=30)
    wait_gone(converters, b"tflite.py")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_bench_takes_its_harness_along_and_the_next_cleans_up(ws: Path, tmp_path: Path) -> None:
    tiny = copy_artifact_dirs(tmp_path)
    args = ["bench", str(tiny["vision"]), "--results", str(tmp_path / "r.jsonl"), "--runs", "1",
            "--min-seconds", "600", "--warmup-seconds", "0"]
    proc = subprocess.Popen(PAYATTN + args, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (harnesses := harness_children(proc.pid)):
        assert time.monotonic() < deadline and proc.poll() is None, "the harness never started"
        time.sleep(0.1)
    job_dirs = list(Path("/tmp").glob(f"payattn-job-{proc.pid}-*"))
    assert job_dirs
    os.kill(proc.pid, signal.SIGKILL)  # the bench only, from outside: not its process group
    proc.wait(timeout=30)
    wait_gone(harnesses, b"payattn.runtime")
    quick = ["bench", str(tiny["vision"]), "--results", str(tmp_path / "r.jsonl"), *QUICK]
    assert runner.invoke(app, quick).exit_code == 0
    assert not any(d.exists() for d in job_dirs)


# ---- disks that are full or read-only ------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs mount of a given size (root only, which CI is); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the disk-fault tests mount tmpfs and need root")
    mounts = []

    def mount(name: str, size: str, read_only: bool = False, fill=None) -> Path:
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True)
        mounts.append(point)
        if fill:
            fill(point)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield mount
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.slow
def test_export_onto_a_full_disk_says_so_and_leaves_nothing(ws: Path, small_disk) -> None:
    disk = small_disk("full", "160k")
    done = subprocess.run(PAYATTN + ["export", "--checkpoint", str(ws / R), "--out", str(disk / "art"),
                                     "--precision", "fp32,fp16"], capture_output=True, text=True)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on the disk" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and "JSONDecodeError" not in done.stderr
    assert list(disk.iterdir()) == []  # no half-written dir, no temp dir, no empty parents


def fill_up(path: Path) -> None:
    """Write to `path` until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_disk_leaves_the_results_file_whole(ws: Path, small_disk, tmp_path: Path) -> None:
    tiny = copy_artifact_dirs(tmp_path / "tiny")
    first = (ws / "results.jsonl").read_bytes().splitlines(keepends=True)[0]
    # Earlier lines that end near a page boundary: less room is left in the file's last page
    # than one more line needs, and the disk has no page to give.
    count = min(range(1, 40), key=lambda k: -(k * len(first)) % 4096)
    earlier = first * count
    assert 0 < -len(earlier) % 4096 < len(first)

    def fill(point: Path) -> None:
        (point / "results.jsonl").write_bytes(earlier)
        fill_up(point / "filler")

    disk = small_disk("full", "256k", fill=fill)
    result = runner.invoke(app, ["bench", str(tiny["vision"]), "--results", str(disk / "results.jsonl"), *QUICK])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert "could not append a line (No space left on device" in lines[-1], result.stderr
    assert "the file is as it was" in lines[-1] and "Traceback" not in result.stderr
    assert (disk / "results.jsonl").read_bytes() == earlier  # no fragment, no foreign-writer blame later


def test_an_interrupted_tail_is_repaired_with_a_message(ws: Path, tmp_path: Path) -> None:
    tiny = copy_artifact_dirs(tmp_path / "tiny")
    lines = (ws / "results.jsonl").read_bytes().splitlines(keepends=True)
    results = tmp_path / "results.jsonl"
    results.write_bytes(lines[0] + lines[1][:300])  # what a killed append once left
    result = runner.invoke(app, ["bench", str(tiny["vision"]), "--results", str(results), *QUICK])
    assert result.exit_code == 0, result.stderr
    assert "removed an incomplete last line (300 bytes)" in result.stderr
    kept = results.read_bytes().splitlines(keepends=True)
    assert kept[0] == lines[0] and len(kept) == 3 and all(k.endswith(b"\n") for k in kept)


READ_ONLY_CASES = [
    "train -m efficient --epochs 1 --depth 1 --out {ro}/runs",
    f"export --checkpoint {R} --out {{ro}}/art",
    f"bench {V} --results {{ro}}/results.jsonl",
    f"bench {V} --results {{ro}}/new.jsonl",
    "report results.jsonl --out {ro}/report",
    "demo --out {ro}/demo",
    "devices add pi --ssh pi@host --devices-file {ro}/devices.toml",
]


@pytest.mark.parametrize("line", READ_ONLY_CASES)
def test_read_only_targets_fail_before_any_work(ws: Path, small_disk, line: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ro = small_disk("ro", "1m", read_only=True,
                    fill=lambda p: shutil.copyfile(ws / "results.jsonl", p / "results.jsonl"))
    monkeypatch.chdir(ws)
    before, inside = snapshot(ws), snapshot(ro)
    started = time.monotonic()
    result = runner.invoke(app, line.format(ro=ro).split())
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ("not writable" in lines[0] or "Read-only" in lines[0]), result.stderr
    assert time.monotonic() - started < 30  # refused up front, not after training or measuring
    assert snapshot(ws) == before and snapshot(ro) == inside


# ---- demo --force next to a user's files ---------------------------------------------------


@pytest.mark.slow
def test_demo_force_replaces_only_its_own_outputs(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "report").mkdir(parents=True)
    (out / "mine.txt").write_text("a user's file")
    (out / "report" / "notes.md").write_text("a user's notes")
    shutil.copyfile(ws / "results.jsonl", out / "results.jsonl")  # an earlier demo's results
    done = subprocess.run(PAYATTN + ["demo", "--out", str(out), "--force", "--epochs", "1",
                                     "--precision", "fp32", "--runs", "2", "--min-seconds", "0"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # The libraries' own notices (Python warnings, torchao's and torch's log lines) are not the user's.
    assert not re.search(r"Warning|Failed to load|^(local: )?W\d{4} ", done.stderr, re.M), done.stderr
    assert (out / "mine.txt").read_text() == "a user's file"
    assert (out / "report" / "notes.md").read_text() == "a user's notes"
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # The old lines replaced: the four mechanisms, each along every road (model.onnx on ONNX
    # Runtime, onnx2tf's and litert-torch's .tflite on LiteRT, the .pte on ExecuTorch).
    assert len(results) == 16 and {r["task"] for r in results} == {"mnist-5k"}
    assert {(r["artifact"]["converter"], r["runtime"]["name"]) for r in results} == {
        ("torch.onnx", "onnxruntime"), ("onnx2tf", "litert"), ("litert-torch", "litert"),
        ("executorch", "executorch")}
    assert (out / "report" / "report.html").is_file()


# ---- the harness bounds itself; Ctrl-C stays clean ---------------------------------------


def test_the_harness_stops_itself_at_its_time_bound(tmp_path: Path) -> None:
    tiny = copy_artifact_dirs(tmp_path)
    job = {"artifacts": [{"path": str(tiny["vision"] / "model.onnx"), "manifest": str(tiny["vision"] / "manifest.json")}],
           # Timing stops counting at 1,000,000 samples per configuration (a few seconds for this
           # model), so four thread settings with long warm-ups and runs keep it busy past 3 s.
           "runtimes": ["onnxruntime"], "threads": [1, 2, 3, 4], "warmup_runs": 0, "warmup_seconds": 600,
           "runs": 1, "min_seconds": 600, "timeout_seconds": 3, "device": {"name": "here", "kind": "local"}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "payattn.runtime", str(tmp_path / "job.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and time.monotonic() - started < 60
    assert done.stderr.strip().splitlines()[-1].startswith("error: the job ran past its bound of 3 s")


def test_ctrl_c_ends_a_bench_without_a_traceback(tmp_path: Path) -> None:
    tiny = copy_artifact_dirs(tmp_path)
    args = ["bench", str(tiny["vision"]), "--results", str(tmp_path / "r.jsonl"), "--runs", "1",
            "--min-seconds", "600", "--warmup-seconds", "0"]
    # A shell that starts a job in the background ignores SIGINT in it: undo that for this one.
    proc = subprocess.Popen(PAYATTN + args, cwd=tmp_path, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not harness_children(proc.pid):
        assert time.monotonic() < deadline and proc.poll() is None, "the harness never started"
        time.sleep(0.1)
    time.sleep(2)  # into the measurement
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode != 0 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""


def test_refusing_a_bench_loads_neither_torch_nor_tensorflow(tmp_path: Path) -> None:
    from test_cli_light import run_cli

    tiny = copy_artifact_dirs(tmp_path)
    heavy, _, _ = run_cli("bench", str(tiny["vision"]), "--precision", "fp32,int4")
    assert heavy == []
