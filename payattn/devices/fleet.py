"""Devices by name: check what one has, and run a job on several (this machine alone, the rest at once).

`run_on_devices` appends each result line to the results file the moment it arrives (through
payattn.runtime.append_results), so a device that fails half-way keeps what it measured; the
failure is recorded with the device's name and the fix, and the other devices still run.
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence, Union

from payattn.devices.adb import BUILD_HINT, AdbDevice, AdbSettings
from payattn.devices.base import (DeviceError, OnResult, Log, ignore_log, load_job_artifacts,
                                  reset_children, stop_children, stopping)
from payattn.devices.local import LocalDevice
from payattn.devices.prebuilt import LITERT_VERSION, check_abi, prebuilt_url
from payattn.devices.registry import DeviceSpec, get_device
from payattn.errors import PayattnError
from payattn.runtime.artifacts import sha256_file
from payattn.devices.ssh import DEFAULT_PYTHON, SshDevice, SshSettings
from payattn.locks import results_lock
from payattn.runtime.env import RUNTIME_MODULES
from payattn.runtime.results import append_results, check_results_file
from payattn.runtime.runners import INSTALL

Device = Union[LocalDevice, SshDevice, AdbDevice]
MIN_PYTHON = (3, 9)
ARM32 = ("armv7l", "armv6l")
ARM32_INSTALL = "numpy==1.26.4 tflite-runtime==2.13.0"  # as requirements-device.txt pins them
# ELF e_machine of a binary -> the Android ABIs it runs on.
ELF_ABIS = {0xB7: ("arm64-v8a",), 0x28: ("armeabi-v7a", "armeabi"), 0x3E: ("x86_64",), 0x03: ("x86",)}


@dataclass
class DeviceCheck:
    """What `payattn devices check NAME` found: the device's facts, what is missing, the fix."""

    name: str
    kind: str
    target: str
    facts: dict
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the device cannot do, and no install fixes
    install: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """Plain text for the CLI: the facts, then each problem with its fix, or OK."""
        facts = self.facts
        memory = f"{facts['memory_bytes'] / 2**30:.1f} GiB" if facts.get("memory_bytes") else "unknown"
        lines = [f"{self.name} ({self.kind}, {self.target})",
                 f"  arch {facts['arch']}, CPU {facts['cpu']}, {facts['cores']} cores, memory {memory}",
                 f"  OS {facts['os']}"]
        if facts.get("emulated"):
            lines.append(f"  emulated by {facts['emulated']}: latencies measured here are not the board's")
        if "python" in facts:
            lines.append(f"  Python {facts['python']} ({facts['python_executable']})")
            lines.append("  runtimes: " + ", ".join(f"{name} {version or 'MISSING'}"
                                                     for name, version in facts["runtimes"].items()))
        else:
            lines.append(f"  benchmark_model {facts['benchmark_model']}")
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  problem: {problem}" for problem in self.problems] or ["  OK: ready to benchmark"]
        return "\n".join(lines)


@dataclass
class DeviceFailure:
    """A device that failed during a multi-device bench, and why (the message names the fix)."""

    device: str
    message: str


def open_device(spec: DeviceSpec, *, ssh: SshSettings = SshSettings(), adb: AdbSettings = AdbSettings(),
                python: str = sys.executable) -> Device:
    """The device object for a registry entry; use it as a context manager."""
    if spec.kind == "ssh":
        return SshDevice(spec, ssh)
    if spec.kind == "adb":
        return AdbDevice(spec, adb)
    return LocalDevice(spec, python=python)


def check_device(name: str, *, devices_file: Path | None = None, ssh: SshSettings = SshSettings(),
                 adb: AdbSettings = AdbSettings()) -> DeviceCheck:
    """Probe a device (architecture, CPU, cores, memory, OS, runtimes) and say what it lacks."""
    spec = get_device(name, devices_file)
    adb = replace(adb, devices_file=adb.devices_file or devices_file)
    with open_device(spec, ssh=ssh, adb=adb) as device:
        facts = device.probe()
        sftp = device.sftp_problem() if isinstance(device, SshDevice) else None
    check = DeviceCheck(name=spec.name, kind=spec.kind, target=spec.target, facts=facts)
    if sftp:
        check.problems.append(sftp)
    if spec.kind == "adb" and spec.benchmark_model is None:
        _check_prebuilt(check, spec, facts, adb)
        return check
    if spec.kind == "adb":
        _check_benchmark_model(check, facts)
        return check
    python = spec.python or (DEFAULT_PYTHON if spec.kind == "ssh" else sys.executable)
    check_harness_facts(check, facts, python)
    return check


def check_harness_facts(check: DeviceCheck, facts: dict, python: str) -> None:
    """Where the harness runs (local, ssh): Python's version and the runtimes, with the fix for
    each; on 32-bit ARM ONNX Runtime cannot exist and LiteRT comes as tflite-runtime."""
    version = tuple(int(part) for part in facts["python"].split(".")[:2])
    if version < MIN_PYTHON:
        check.problems.append(f"Python {facts['python']} is too old; the harness needs Python "
                              f"{'.'.join(map(str, MIN_PYTHON))}+ (install python3 or re-add with --python PATH)")
    runtimes = dict(facts["runtimes"])
    if facts["arch"] in ARM32:
        if runtimes.pop("onnxruntime") is None:
            check.notes.append("ONNX Runtime is unavailable: it publishes no wheels for 32-bit ARM "
                               f"({facts['arch']}); bench this board with --runtime litert")
        if runtimes["litert"] is None:
            check.install = f"{python} -m pip install {ARM32_INSTALL}"
            check.problems.append(f"no LiteRT interpreter: on 32-bit ARM only tflite-runtime exists (Python "
                                  f"3.10 at most, e.g. Raspberry Pi OS 11); install with `{check.install}`")
            runtimes.pop("litert")
    if runtimes.pop("executorch", None) is None:  # optional: it brings torch, and only .pte files need it
        check.notes.append(f"ExecuTorch is not installed: .pte artifacts will not run here; install with "
                           f"`{python} -m pip install {INSTALL['executorch']}`")
    missing = [RUNTIME_MODULES[runtime][0][1] for runtime, found in runtimes.items() if found is None]
    if missing:
        check.install = f"{python} -m pip install {' '.join(missing)}"
        check.problems.append(
            f"missing on the device: {', '.join(missing)}; install with `{check.install}` (where pip refuses "
            "an externally managed Python, as on Raspberry Pi OS 12: `python3 -m venv ~/payattn-venv`, "
            "install there, and re-add the device with --python ~/payattn-venv/bin/python)")


def _check_prebuilt(check: DeviceCheck, spec: DeviceSpec, facts: dict, adb: AdbSettings) -> None:
    """LiteRT's prebuilt binary: one for this ABI, cached or not, unchanged since first used."""
    try:
        check_abi(facts["arch"])
    except PayattnError as exc:
        check.problems.append(str(exc))
        return
    binary = Path(facts["benchmark_model"])
    if not facts["benchmark_model_found"]:
        where = f"fetched on the first bench from {prebuilt_url(facts['arch'], adb.fetch)}"
        check.notes.append(f"LiteRT {LITERT_VERSION}'s prebuilt benchmark_model is not cached yet: {where}")
        return
    recorded = spec.benchmark_model_sha256
    if recorded and spec.benchmark_model_version == LITERT_VERSION and sha256_file(binary) != recorded:
        check.problems.append(f"the cached {binary} differs from the benchmark_model first used (sha256 "
                              f"{recorded[:16]}…); delete it and re-add the device to trust a new one")


def _check_benchmark_model(check: DeviceCheck, facts: dict) -> None:
    binary = Path(facts["benchmark_model"])
    if not facts["benchmark_model_found"]:
        check.problems.append(f"benchmark_model not found at {binary}; {BUILD_HINT}")
        return
    with open(binary, "rb") as stream:
        header = stream.read(20)
    if header[:4] != b"\x7fELF":
        check.problems.append(f"{binary} is not an executable for Android (no ELF header); {BUILD_HINT}")
        return
    machine = int.from_bytes(header[18:20], "little")
    abis = ELF_ABIS.get(machine)
    if abis is not None and facts["arch"] not in abis:
        check.problems.append(f"{binary} is built for {abis[0]} but the phone is {facts['arch']}; {BUILD_HINT}")


def run_on_devices(
    device_names: Sequence[str],
    job: dict,
    results_file: Path | None,
    *,
    devices_file: Path | None = None,
    ssh: SshSettings = SshSettings(),
    adb: AdbSettings = AdbSettings(),
    log: Log = ignore_log,
    on_result: OnResult | None = None,
    wait: bool = False,
) -> tuple[list[dict], list[DeviceFailure]]:
    """Run `job` on the devices (see run_fleet for the order), appending results to `results_file`
    as they come (None: keep them in memory only, as for a parity job).

    Returns (results, failures); `on_result` sees each line once it is in the file. A failed device
    does not stop the others, and whatever it measured before failing is already in `results_file`.
    Unknown device names fail before anything runs, and so does an artifact that is missing or
    does not match its manifest. The results file is locked while lines are appended to it
    (`wait`: wait for another writer instead of failing)."""
    specs = [get_device(name, devices_file) for name in dict.fromkeys(device_names)]
    adb = replace(adb, devices_file=adb.devices_file or devices_file)  # where a phone's binary is recorded
    load_job_artifacts(job)
    if results_file is not None:
        check_results_file(results_file, repair=False)
    with results_lock(results_file, wait=wait, log=log if log is not ignore_log else None):
        if results_file is not None:
            results_file = check_results_file(results_file, log)
        return _run_and_keep(specs, job, results_file, ssh, adb, log, on_result)


def _run_and_keep(specs: list, job: dict, results_file: Path | None, ssh: SshSettings,
                  adb: AdbSettings, log: Log,
                  on_result: OnResult | None) -> tuple[list[dict], list[DeviceFailure]]:
    """Run the fleet, appending each line to `results_file` before showing it."""
    results: list[dict] = []

    def keep(result: dict) -> None:
        if results_file is not None:
            append_results(results_file, [result])
        results.append(result)
        if on_result:
            on_result(result)

    failures = run_fleet(specs, job, keep, ssh=ssh, adb=adb, log=log)
    return results, failures


def verify_on_devices(device_names: Sequence[str], job: dict, **options: Any) -> tuple[list[dict], list[DeviceFailure]]:
    """Run `job` as a parity job (payattn.runtime.parity) on the devices; return its lines and
    failures. `options` are run_on_devices'."""
    return run_on_devices(device_names, {**job, "task": "verify"}, None, **options)


def run_fleet(specs: Sequence[DeviceSpec], job: dict, keep: OnResult, *, ssh: SshSettings,
              adb: AdbSettings, log: Log) -> list[DeviceFailure]:
    """Run `job` on every device: this machine first and alone (anything running beside it
    would disturb its own timings), then all the other devices at once, each on its own
    thread, since each measures on its own hardware. `keep` sees each line whole, one at a
    time, as it arrives; a device that fails or hangs (until its timeout) holds up no other."""
    failures: list[DeviceFailure] = []
    lock = threading.Lock()

    def keep_one(line: dict) -> None:
        with lock:
            keep(line)

    def run_one(spec: DeviceSpec) -> None:
        log(f"{spec.name}: running on {spec.target}")
        try:
            with open_device(spec, ssh=ssh, adb=adb) as device:
                run = device.bench(job, on_result=keep_one, log=log)
            log(f"{spec.name}: {len(run.results)} line(s) in {run.seconds:.1f} s, "
                     f"{run.bytes_copied} bytes copied")
        except DeviceError as exc:
            if stopping():  # its ssh or adb was stopped by Ctrl-C or SIGTERM, not by a fault
                return
            with lock:
                failures.append(DeviceFailure(spec.name, str(exc)))
            log(f"{spec.name}: FAILED: {exc}")

    reset_children()
    for spec in specs:
        if spec.kind == "local":
            run_one(spec)
    remote = [spec for spec in specs if spec.kind != "local"]
    if remote:
        with ThreadPoolExecutor(max_workers=len(remote), thread_name_prefix="payattn-device") as pool:
            try:
                for future in [pool.submit(run_one, spec) for spec in remote]:
                    future.result()  # re-raises what is not a device's failure (a full disk, a bad line)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: end every device's wait, now
                stop_children()
                raise
    order = [spec.name for spec in specs]
    return sorted(failures, key=lambda failure: order.index(failure.device))
