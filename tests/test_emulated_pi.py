"""The emulated Raspberry Pi (scripts/emulated-pi.sh): a Debian 12 arm64 userland under QEMU
with its own aarch64 sshd, reached like a board. It proves the arm64 wheels of numpy, ONNX
Runtime and LiteRT, on-device parity and the SSH path for every road whose file runs there
(ONNX, onnx2tf's and litert-torch's .tflite); its latencies are never a Pi's. ExecuTorch has
no install on a Pi 4 from PyPI (docs/devices.md), so the .pte files get the one line that
names its install, and the other files still run.

Slow (all but the recipe test): the first run builds the rootfs (about 5 minutes, then cached in
~/.cache/payattn/emulated-pi), and the four mechanisms are trained and exported at every
precision. Needs root and qemu-user-static, binfmt-support, debootstrap
(scripts/ci_system_deps.sh installs them); anything missing is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payattn.cli import app
from payattn.devices import DeviceSpec, SshDevice, get_device, run_on_devices
from payattn.hooks import Hooks
from payattn.mechanisms import MECHANISMS
from payattn.bench import build_job
from payattn.runtime.settings import BenchSettings
from payattn.pipeline import train_and_export
from payattn.workers import run_side_by_side, usable_cores

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "emulated-pi.sh"
PRECISIONS = ("fp32", "fp16", "dynamic-int8", "int8")
ON_THE_PI = {"onnx": "onnxruntime", "tflite": "litert"}  # the formats whose runtime the Pi has
QUICK = ["--runs", "3", "--warmup", "1", "--min-seconds", "0", "--warmup-seconds", "0"]
HWCAP_ATOMICS = 1 << 8  # ARMv8.1 atomics: QEMU's default "max" CPU has them, a Cortex-A72 does not
AUXV_HWCAP = (
    "import struct; d = open('/proc/self/auxv', 'rb').read(); "
    "print([v for k, v in struct.iter_unpack('<QQ', d) if k == 16][0])"
)
runner = CliRunner()


def emulated_pi(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run the script; its last stdout line is the registration command on `up`."""
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def up(name: str, devices_file: Path) -> DeviceSpec:
    """Start instance NAME and register it with the command the script prints."""
    out = emulated_pi("up", name)
    if out.returncode != 0:
        pytest.fail(f"scripts/emulated-pi.sh up {name} failed: {out.stderr[-3000:]}", pytrace=False)
    command = shlex.split(out.stdout.strip().splitlines()[-1])
    assert command[:3] == ["payattn", "devices", "add"], out.stdout
    added = runner.invoke(app, [*command[1:], "--devices-file", str(devices_file)])
    assert added.exit_code == 0, added.output
    return get_device(name, devices_file)


@pytest.fixture(scope="module")
def pis(tmp_path_factory: pytest.TempPathFactory):
    """Two emulated Pis (instances of one cached rootfs), registered in a devices file of their own."""
    devices_file = tmp_path_factory.mktemp("devices") / "devices.toml"
    names = [f"t{os.getpid()}a", f"t{os.getpid()}b"]
    try:
        specs = [up(name, devices_file) for name in names]
        yield devices_file, specs
    finally:
        for name in names:
            emulated_pi("down", name)


@pytest.fixture(scope="module")
def artifact_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """mnist-tiny, each mechanism, all four precisions, every road (the task's default epochs:
    int8 needs a trained model to keep 98% of PyTorch's top-1 classes), one mechanism per core
    as the demo does it."""
    root = tmp_path_factory.mktemp("emulated-artifacts")
    jobs = [(train_and_export, ("mnist-5k", mechanism, root, None, list(PRECISIONS), False))
            for mechanism in MECHANISMS]
    return list(run_side_by_side(jobs, min(usable_cores(), len(jobs)), Hooks()))


@pytest.mark.slow
def test_up_is_idempotent_and_qemu_cpu_reaches_ssh_sessions(pis) -> None:
    devices_file, (pi, _) = pis
    again = emulated_pi("up", pi.name)
    assert again.returncode == 0 and f"127.0.0.1:{pi.port}" in again.stdout.splitlines()[-1]
    with SshDevice(pi) as device:
        shown = device.run(f"uname -m; echo $QEMU_CPU; {pi.python} -c {shlex.quote(AUXV_HWCAP)}; "
                           f"QEMU_CPU=max {pi.python} -c {shlex.quote(AUXV_HWCAP)}")
    machine, cpu, hwcap, hwcap_max = shown.stdout.decode().split()
    assert (machine, cpu) == ("aarch64", "cortex-a72")
    assert not int(hwcap) & HWCAP_ATOMICS  # the session's processes run as a Cortex-A72 ...
    assert int(hwcap_max) & HWCAP_ATOMICS  # ... which this check tells apart from QEMU's default


@pytest.mark.slow
def test_devices_check_sees_the_arm64_runtimes(pis) -> None:
    devices_file, (pi, _) = pis
    out = runner.invoke(app, ["devices", "check", pi.name, "--devices-file", str(devices_file)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split())
    assert "arch aarch64, CPU Cortex-A72" in text and "emulated by qemu-user:cortex-a72" in text
    assert (f"numpy {pins['numpy']}, onnxruntime {pins['onnxruntime']}, litert {pins['ai-edge-litert']}"
            in text)
    assert "OK: ready to benchmark" in text
    assert "ExecuTorch is not installed: .pte artifacts will not run here" in text  # a note, not a problem


def benched(artifact_dirs: list[Path]) -> set[tuple[str, str, str, str]]:
    """(mechanism, runtime, converter, precision) of every file `bench` times on the Pi: the
    manifests' as-trained files whose runtime the Pi has."""
    return {(json.loads((d / "manifest.json").read_text())["mechanism"], ON_THE_PI[a["format"]],
             a["converter"], a["precision"])
            for d in artifact_dirs for a in json.loads((d / "manifest.json").read_text())["artifacts"]
            if a["format"] in ON_THE_PI and a.get("variant", "as-trained") == "as-trained"}


@pytest.mark.slow
def test_bench_verifies_then_measures_every_mechanism_precision_and_road(pis, artifact_dirs, tmp_path) -> None:
    devices_file, (pi, _) = pis
    results = tmp_path / "results.jsonl"
    expected = benched(artifact_dirs)
    made = {(m, c) for m, _, c, _ in expected}
    assert made == {(m, c) for m in MECHANISMS for c in ("torch.onnx", "onnx2tf", "litert-torch")}
    started = time.monotonic()
    out = runner.invoke(app, ["bench", *map(str, artifact_dirs), "--device", pi.name, "--verify",
                              "--precision", ",".join(PRECISIONS), "--results", str(results),
                              "--devices-file", str(devices_file), *QUICK])
    print(f"bench --verify on the emulated Pi: {time.monotonic() - started:.1f} s wall, {len(expected)} files")
    assert out.exit_code == 0, out.output
    table = [line for line in out.output.splitlines() if "(aarch64, emulated)" in line]
    assert len(table) == len(expected) and all(line.rstrip(" │").endswith("pass") for line in table)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert {(r["mechanism"], r["runtime"]["name"], r["artifact"]["converter"], r["artifact"]["precision"])
            for r in lines} == expected and len(lines) == len(expected)
    assert {(r["device"]["arch"], r["device"]["emulated"], r["device"]["cpu"]) for r in lines} == {
        ("aarch64", "qemu-user:cortex-a72", "Cortex-A72")}
    # the .pte files: one line each for the parity pass and the timed pass, naming the install
    text = " ".join(out.output.split())
    assert text.count("executorch is not installed here") == 2, out.output
    assert text.count("install it with `pip install executorch==1.5.1`; its artifacts are skipped") == 2
    report = runner.invoke(app, ["report", str(results), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"{pi.name} (emulated)" in markdown and "never the board's" in markdown
    assert "litert-torch" in markdown


def silent_listener() -> socket.socket:
    """A port that accepts TCP connections and never says a word: a hung board."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


@pytest.mark.slow
def test_fleet_runs_boards_at_once_and_a_dead_one_stalls_none(pis, artifact_dirs, tmp_path) -> None:
    devices_file, (pi_a, pi_b) = pis
    listener = silent_listener()
    dead = runner.invoke(app, ["devices", "add", "hung", "--ssh", f"pi@127.0.0.1:{listener.getsockname()[1]}",
                               "--devices-file", str(devices_file)])
    assert dead.exit_code == 0, dead.output
    events: list[tuple[float, str]] = []
    job = build_job(artifact_dirs, runtimes=("onnxruntime", "litert"), precisions=("fp32",),
                    settings=BenchSettings(runs=20, warmup_runs=1, min_seconds=0, warmup_seconds=0))
    started = time.monotonic()
    try:
        results, failures = run_on_devices(
            ["local", pi_a.name, pi_b.name, "hung"], job, tmp_path / "results.jsonl", devices_file=devices_file,
            log=lambda message: events.append((time.monotonic() - started, message)))
    finally:
        listener.close()
    wall = time.monotonic() - started
    span = {}
    for name in ("local", pi_a.name, pi_b.name):
        begin = next(t for t, m in events if m.startswith(f"{name}: running on"))
        end, seconds = next((t, float(re.search(r"line\(s\) in ([\d.]+) s", m)[1])) for t, m in events
                            if m.startswith(f"{name}: ") and " line(s) in " in m)
        span[name] = (begin, end, seconds)
    print("fleet: wall {:.1f} s; per device {}".format(
        wall, ", ".join(f"{n} {s:.1f} s" for n, (_, _, s) in span.items())))
    # local ran alone, first; the two boards ran at the same time
    assert span["local"][1] <= min(span[pi_a.name][0], span[pi_b.name][0])
    assert span[pi_a.name][0] < span[pi_b.name][1] and span[pi_b.name][0] < span[pi_a.name][1]
    assert [f.device for f in failures] == ["hung"]
    per_device = {name: sum(r["device"]["name"] == name for r in results) for name in span}
    assert per_device == {name: 4 * 3 for name in span}  # ONNX, onnx2tf's and litert-torch's fp32
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 4 * 3 and all(json.loads(line)["schema"] == "payattn.result/1" for line in lines)


@pytest.mark.slow
def test_down_stops_and_unmounts_everything_it_started(tmp_path) -> None:
    name = f"t{os.getpid()}c"
    devices_file = tmp_path / "devices.toml"
    up(name, devices_file)
    instance = Path(os.environ.get("PAYATTN_EMULATED_PI_CACHE", Path.home() / ".cache/payattn/emulated-pi"))
    instance = instance / "instances" / name
    pid = int((instance / "sshd.pid").read_text())
    assert str(instance) in Path("/proc/mounts").read_text()
    for _ in range(2):  # safe to repeat
        down = emulated_pi("down", name)
        assert down.returncode == 0, down.stderr
    assert not Path(f"/proc/{pid}").exists()
    assert str(instance) not in Path("/proc/mounts").read_text() and not instance.exists()
    assert name not in emulated_pi("status").stdout


def test_rootfs_is_keyed_by_its_recipe(tmp_path) -> None:
    """A changed device requirement means a new rootfs; a change elsewhere reuses the cached one."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("scripts/emulated-pi.sh", "requirements-device.txt"):
        (repo / name).write_bytes((REPO / name).read_bytes())

    def rootfs() -> str:
        out = subprocess.run(["bash", str(repo / "scripts" / "emulated-pi.sh"), "status"], capture_output=True,
                             text=True, env={**os.environ, "PAYATTN_EMULATED_PI_CACHE": str(tmp_path / "cache")})
        assert out.returncode == 0, out.stderr
        return re.search(r"rootfs: (\S+) not built yet", out.stdout)[1]

    first = rootfs()
    script = repo / "scripts" / "emulated-pi.sh"
    script.write_text(script.read_text().replace("# An emulated Raspberry Pi", "# A Raspberry Pi, emulated", 1))
    assert "# A Raspberry Pi, emulated" in script.read_text()
    assert rootfs() == first
    requirements = repo / "requirements-device.txt"
    requirements.write_text(requirements.read_text().replace("numpy==2.4.6", "numpy==2.4.5"))
    assert rootfs() != first and rootfs().startswith(str(tmp_path / "cache" / "rootfs-"))
