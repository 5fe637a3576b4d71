"""SSH devices against a real OpenSSH server on loopback (see sshd_fixture.py).

The 'device' is this machine reached through sshd, with this interpreter as the device's
Python (so numpy and onnxruntime import there), a cache dir of its own under tmp, and tiny
ONNX artifacts built by hand with onnx.helper (tests/tiny_artifacts.py).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnxruntime
import pytest
from sshd_fixture import free_port
from tiny_artifacts import VISION_INPUTS, TEXT_INPUTS, onnx_model, write_manifest

from payattn.devices import (
    DeviceError,
    LocalDevice,
    SshDevice,
    SshSettings,
    add_ssh_device,
    check_device,
    get_device,
    run_on_devices,
)
from payattn.devices.ssh import runtime_package_files, shell_path
from payattn.runtime import validate_result


@pytest.fixture(scope="module")
def onnx_dirs(tmp_path_factory) -> list[Path]:
    """Two artifact dirs, one ONNX model each (vision/standard, text/efficient)."""
    root = tmp_path_factory.mktemp("artifacts")
    dirs = []
    for kind, mechanism, inputs in (("vision", "standard", VISION_INPUTS), ("text", "efficient", TEXT_INPUTS)):
        directory = root / kind
        directory.mkdir()
        onnx_model(directory / "model.onnx", kind)
        write_manifest(directory, mechanism, kind, {"model.onnx": inputs["model.onnx"]})
        dirs.append(directory)
    return dirs


def make_job(dirs: list[Path], threads=(1,), runs: int = 20, min_seconds: float = 0.0) -> dict:
    return {"artifacts": [{"path": str(d / "model.onnx"), "manifest": str(d / "manifest.json")} for d in dirs],
            "runtimes": ["onnxruntime"], "threads": list(threads), "warmup_runs": 2, "warmup_seconds": 0.0,
            "runs": runs, "min_seconds": min_seconds, "device": {"name": "ignored", "kind": "local"}}


@pytest.fixture
def board(sshd_server, tmp_path):
    """A registry with `board` (the sshd device), and settings using the test's own ssh config."""
    devices = tmp_path / "devices.toml"
    add_ssh_device("board", sshd_server.target, identity=str(sshd_server.identity), python=sys.executable,
                   path=devices)
    settings = SshSettings(config_file=sshd_server.ssh_config, remote_dir=str(tmp_path / "device-cache"),
                           connect_timeout=5, timeout=120)
    return devices, settings


def accepted_connections(sshd_server) -> int:
    return sshd_server.log.read_text(errors="replace").count("Accepted publickey")


@pytest.mark.slow
def test_ssh_bench_end_to_end(sshd_server, board, onnx_dirs):
    devices, settings = board
    job = {**make_job(onnx_dirs), "git_commit": "c0ffee"}  # build_job sets the host's commit once
    spec = get_device("board", devices)
    before = accepted_connections(sshd_server)
    started = time.perf_counter()
    with SshDevice(spec, settings) as device:
        first = device.bench(job)
    ssh_first_s = time.perf_counter() - started
    assert accepted_connections(sshd_server) - before == 1  # one master connection for the whole run

    expected_bytes = sum(local.stat().st_size for local, _ in runtime_package_files()) + sum(
        (d / "model.onnx").stat().st_size + (d / "manifest.json").stat().st_size for d in onnx_dirs)
    assert first.bytes_copied == expected_bytes
    assert len(first.results) == 2
    for result, directory in zip(first.results, onnx_dirs):
        validate_result(result)
        assert result["device"]["name"] == "board" and result["device"]["kind"] == "ssh"
        assert result["device"]["arch"] == platform.machine()
        assert result["artifact"]["path"] == str(directory / "model.onnx")  # the local path, not the copy
        assert result["runtime"]["name"] == "onnxruntime" and result["runs"] >= 20
        assert result["git_commit"] == "c0ffee"
    cache = settings.remote_dir
    assert (Path(cache) / "pkg/payattn/runtime/__main__.py").is_file()

    started = time.perf_counter()
    with SshDevice(spec, settings) as device:
        second = device.bench(job)
    ssh_second_s = time.perf_counter() - started
    assert second.bytes_copied == 0 and len(second.results) == 2

    started = time.perf_counter()
    local = LocalDevice().bench(job)
    local_s = time.perf_counter() - started
    assert [r["device"]["kind"] for r in local.results] == ["local", "local"]
    print(f"\nSSH bench: first run {ssh_first_s:.2f} s ({first.bytes_copied} bytes copied), "
          f"second run {ssh_second_s:.2f} s ({second.bytes_copied} bytes copied); "
          f"local {local_s:.2f} s; SSH overhead {ssh_second_s - local_s:+.2f} s (cached), "
          f"{ssh_first_s - local_s:+.2f} s (first)")


def test_changed_file_on_device_is_copied_again(board, onnx_dirs):
    devices, settings = board
    job = make_job(onnx_dirs[:1], runs=5)
    with SshDevice(get_device("board", devices), settings) as device:
        device.bench(job)
        copies = list(Path(settings.remote_dir, "artifacts").glob("*/model.onnx"))
        assert len(copies) == 1
        copies[0].write_bytes(b"damaged")
        again = device.bench(job)
    assert again.bytes_copied == (onnx_dirs[0] / "model.onnx").stat().st_size
    assert copies[0].read_bytes() == (onnx_dirs[0] / "model.onnx").read_bytes()


def test_wrong_port_is_a_clear_error(sshd_server, board, onnx_dirs, tmp_path):
    devices, settings = board
    add_ssh_device("closed", f"{sshd_server.user}@127.0.0.1:{free_port()}", identity=str(sshd_server.identity),
                   python=sys.executable, path=devices)
    with pytest.raises(DeviceError, match=r"device 'closed': 127\.0\.0\.1:\d+ refused the connection; "
                                          r"check that the SSH server runs"):
        SshDevice(get_device("closed", devices), settings).bench(make_job(onnx_dirs))


def test_refused_key_is_a_clear_error(sshd_server, board, onnx_dirs):
    devices, settings = board
    add_ssh_device("stranger", sshd_server.target, identity=str(sshd_server.other_identity),
                   python=sys.executable, path=devices)
    with pytest.raises(DeviceError, match=r"device 'stranger': .* refused the SSH key .*ssh-copy-id -i "):
        SshDevice(get_device("stranger", devices), settings).bench(make_job(onnx_dirs))


def test_missing_python_and_missing_runtimes(sshd_server, board, onnx_dirs, tmp_path):
    devices, settings = board
    add_ssh_device("nopython", sshd_server.target, identity=str(sshd_server.identity),
                   python="/nonexistent/python3", path=devices)
    with pytest.raises(DeviceError, match=r"'/nonexistent/python3' is not found on the device; install Python 3"):
        SshDevice(get_device("nopython", devices), settings).bench(make_job(onnx_dirs))

    # The same interpreter without site-packages: a device where numpy and the runtimes are absent.
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    add_ssh_device("bare", sshd_server.target, identity=str(sshd_server.identity), python=str(bare), path=devices)
    with pytest.raises(DeviceError, match=r"No module named 'numpy'; install what is missing with "
                                          r"`.*bare-python -m pip install numpy onnxruntime ai-edge-litert`"):
        SshDevice(get_device("bare", devices), settings).bench(make_job(onnx_dirs))
    check = check_device("bare", devices_file=devices, ssh=settings)
    assert not check.ok
    assert check.install == f"{bare} -m pip install numpy onnxruntime ai-edge-litert"
    assert "runtimes: numpy MISSING, onnxruntime MISSING, litert MISSING" in check.describe()
    assert check.facts["arch"] == platform.machine() and check.facts["cores"] == os.cpu_count()


def test_check_a_complete_device(board):
    devices, settings = board
    check = check_device("board", devices_file=devices, ssh=settings)
    assert check.ok, check.problems
    assert check.facts["runtimes"]["onnxruntime"] == onnxruntime.__version__
    assert check.facts["python_executable"] == sys.executable


def test_failing_device_keeps_other_results(sshd_server, board, onnx_dirs, tmp_path):
    devices, settings = board
    add_ssh_device("closed", f"{sshd_server.user}@127.0.0.1:{free_port()}", path=devices)
    results_file = tmp_path / "results.jsonl"
    results, failures = run_on_devices(["local", "closed", "board"], make_job(onnx_dirs, runs=5), results_file,
                                       devices_file=devices, ssh=settings)
    assert [f.device for f in failures] == ["closed"] and "refused the connection" in failures[0].message
    lines = [json.loads(line) for line in results_file.read_text().splitlines()]
    assert [line["device"]["name"] for line in lines] == ["local", "local", "board", "board"]
    assert lines == results


def test_device_dropping_mid_run(sshd_server, board, onnx_dirs, tmp_path):
    """Kill the server side of the connection once the first round's results are in."""
    devices, settings = board
    results_file = tmp_path / "results.jsonl"
    job = make_job(onnx_dirs, threads=(1, 2), runs=5, min_seconds=1.5)

    def drop_connections() -> None:
        # Lines arrive one by one: wait for the whole first round (two artifacts, 1 thread).
        while not results_file.exists() or len(results_file.read_text().splitlines()) < 2:
            time.sleep(0.05)
        children = subprocess.run(["pgrep", "-P", str(sshd_server.pid)], capture_output=True, text=True).stdout
        for pid in children.split():
            os.kill(int(pid), signal.SIGKILL)

    killer = threading.Thread(target=drop_connections, daemon=True)
    killer.start()
    results, failures = run_on_devices(["board"], job, results_file, devices_file=devices, ssh=settings)
    killer.join(timeout=10)
    assert len(results) == 2  # the first round (1 thread) came back before the drop
    assert [f.device for f in failures] == ["board"]
    assert "dropped mid-run" in failures[0].message and "2 result(s) measured before it are kept" in failures[0].message
    assert len(results_file.read_text().splitlines()) == 2


def test_timeout_stops_the_job(board, onnx_dirs):
    devices, settings = board
    impatient = SshSettings(config_file=settings.config_file, remote_dir=settings.remote_dir,
                            connect_timeout=5, timeout=1.0)
    with SshDevice(get_device("board", devices), settings) as device:
        device.bench(make_job(onnx_dirs, runs=1))  # fill the cache: only the harness is timed out
    with pytest.raises(DeviceError, match=r"device 'board': the job did not finish within 1 s and was stopped"):
        with SshDevice(get_device("board", devices), impatient) as device:
            device.bench(make_job(onnx_dirs, runs=5, min_seconds=3.0))
    harness = int(Path(settings.remote_dir, "harness.pid").read_text())
    with pytest.raises(ProcessLookupError):  # the harness on the device was stopped too
        for _ in range(50):
            os.kill(harness, 0)
            time.sleep(0.1)


def test_shell_path_keeps_home_and_quotes_the_rest():
    words = [shell_path("~/payattn venv/bin/python"), shell_path("/opt/it's"), shell_path(".cache/payattn")]
    out = subprocess.run(["sh", "-c", "printf '%s\\n' " + " ".join(words)], capture_output=True, text=True,
                         env={"HOME": "/home/pi", "PATH": os.environ["PATH"]}, check=True).stdout
    assert out.splitlines() == ["/home/pi/payattn venv/bin/python", "/opt/it's", ".cache/payattn"]


def test_a_killed_runs_control_master_is_stopped_by_the_next(board):
    devices, settings = board
    spec = get_device("board", devices)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs: the killed run's
    first = SshDevice(spec, settings)
    first.open()
    leftover = first._control_dir.with_name(f"payattn-ssh-{gone.pid}-{first._control_dir.name.rsplit('-', 1)[1]}")
    os.rename(first._control_dir, leftover)
    first._control_dir = None  # as if its run was SIGKILLed: nothing closes the master
    socket = next(leftover.glob("cm-*"))
    check = subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "check", "x"], capture_output=True, text=True)
    master = int(check.stderr.split("pid=")[1].split(")")[0])
    with SshDevice(spec, settings):
        assert not leftover.exists()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{master}").exists() and "ssh" in Path(f"/proc/{master}/cmdline").read_text(errors="replace"):
        assert time.monotonic() < deadline, "the killed run's control master still runs"
        time.sleep(0.1)
