"""Devices by name: check what one has, and bench a job on several in turn.

`run_on_devices` appends each result line to the results file the moment it arrives (through
payattn.runtime.append_results), so a device that fails half-way keeps what it measured; the
failure is recorded with the device's name and the fix, and the other devices still run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

from payattn.devices.adb import BUILD_HINT, AdbDevice, AdbSettings
from payattn.devices.base import DeviceError, OnResult, Log, ignore_log, load_job_artifacts
from payattn.devices.local import LocalDevice
from payattn.devices.registry import DeviceSpec, get_device
from payattn.devices.ssh import DEFAULT_PYTHON, SshDevice, SshSettings
from payattn.runtime.env import RUNTIME_MODULES
from payattn.runtime.results import append_results, check_results_file

Device = Union[LocalDevice, SshDevice, AdbDevice]
MIN_PYTHON = (3, 9)
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
        if "python" in facts:
            lines.append(f"  Python {facts['python']} ({facts['python_executable']})")
            lines.append("  runtimes: " + ", ".join(f"{name} {version or 'MISSING'}"
                                                     for name, version in facts["runtimes"].items()))
        else:
            lines.append(f"  benchmark_model {facts['benchmark_model']}")
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
    with open_device(spec, ssh=ssh, adb=adb) as device:
        facts = device.probe()
    check = DeviceCheck(name=spec.name, kind=spec.kind, target=spec.target, facts=facts)
    if spec.kind == "adb":
        _check_benchmark_model(check, facts)
        return check
    python = spec.python or (DEFAULT_PYTHON if spec.kind == "ssh" else sys.executable)
    version = tuple(int(part) for part in facts["python"].split(".")[:2])
    if version < MIN_PYTHON:
        check.problems.append(f"Python {facts['python']} is too old; the harness needs Python "
                              f"{'.'.join(map(str, MIN_PYTHON))}+ (install python3 or re-add with --python PATH)")
    missing = [RUNTIME_MODULES[runtime][1] for runtime, found in facts["runtimes"].items() if found is None]
    if missing:
        check.install = f"{python} -m pip install {' '.join(missing)}"
        check.problems.append(
            f"missing on the device: {', '.join(missing)}; install with `{check.install}` (where pip refuses "
            "an externally managed Python, as on Raspberry Pi OS 12: `python3 -m venv ~/payattn-venv`, "
            "install there, and re-add the device with --python ~/payattn-venv/bin/python)")
    return check


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
    results_file: Path,
    *,
    devices_file: Path | None = None,
    ssh: SshSettings = SshSettings(),
    adb: AdbSettings = AdbSettings(),
    log: Log = ignore_log,
    on_result: OnResult | None = None,
) -> tuple[list[dict], list[DeviceFailure]]:
    """Bench `job` on each device in turn, appending results as they come.

    Returns (results, failures); `on_result` sees each line once it is in the file. A failed device does not stop the others, and whatever it
    measured before failing is already in `results_file`. Unknown device names fail before
    anything runs, and so does an artifact that is missing or does not match its manifest."""
    specs = [get_device(name, devices_file) for name in dict.fromkeys(device_names)]
    load_job_artifacts(job)
    results_file = check_results_file(results_file, log)
    results: list[dict] = []
    failures: list[DeviceFailure] = []

    def keep(result: dict) -> None:
        append_results(results_file, [result])
        results.append(result)
        if on_result:
            on_result(result)

    for spec in specs:
        log(f"{spec.name}: benchmarking on {spec.target}")
        try:
            with open_device(spec, ssh=ssh, adb=adb) as device:
                run = device.bench(job, on_result=keep, log=log)
            log(f"{spec.name}: {len(run.results)} result(s) in {run.seconds:.1f} s, "
                     f"{run.bytes_copied} bytes copied")
        except DeviceError as exc:
            failures.append(DeviceFailure(spec.name, str(exc)))
            log(f"{spec.name}: FAILED: {exc}")
    return results, failures
