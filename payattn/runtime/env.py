"""Where a measurement runs: the device's CPU, cores, memory, OS, runtimes, and the code's commit.

Standard library only and self-contained: result lines take their "device" object from here,
and `payattn devices check` sends this file's source to a device's Python on stdin
(`python3 -`), before payattn or numpy may exist there, to print `probe()` as one JSON line.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from collections import Counter
from pathlib import Path

# ARM's own core part numbers (/proc/cpuinfo "CPU part" with implementer 0x41), enough for the
# Raspberry Pi and common phone cores; 64-bit Raspberry Pi OS reports no "model name".
_ARM_CORES = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
              "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
              "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3"}


# What payattn.runtime imports on a device: name -> (module, distribution that installs it),
# alternatives in order: 32-bit ARM boards (Raspberry Pi OS 11) have no ai-edge-litert wheels,
# only tflite-runtime, whose Interpreter is the same API.
RUNTIME_MODULES = {
    "numpy": (("numpy", "numpy"),),
    "onnxruntime": (("onnxruntime", "onnxruntime"),),
    "litert": (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime")),
    "executorch": (("executorch.runtime", "executorch"),),  # imports torch: only probed or asked for
}
# Set (e.g. to "qemu-user:cortex-a72") by whatever runs this machine under an emulator, as
# scripts/emulated-pi.sh does through its sshd: emulated latencies are not the board's.
EMULATED_VARIABLE = "PAYATTN_EMULATED"


def device_info(name: str, kind: str) -> dict[str, object]:
    """The result line's "device" object for this machine."""
    return {"name": name, "kind": kind, "cpu": cpu_model(), "cores": os.cpu_count(),
            "os": os_description(), "arch": platform.machine() or "unknown", "memory_bytes": memory_bytes(),
            "emulated": emulated()}


def emulated() -> str | None:
    """What emulates this machine, or None on real hardware."""
    return os.environ.get(EMULATED_VARIABLE) or None


def cpu_model() -> str:
    """CPU model, prefixed by the board where the device tree names one (Raspberry Pi)."""
    cpu = (cpu_from_cpuinfo(_read("/proc/cpuinfo")) or _macos_cpu() or platform.processor()
           or platform.machine() or "unknown")
    board = _read("/proc/device-tree/model").strip("\x00 \n")
    return f"{board}, {cpu}" if board else cpu


def cpu_from_cpuinfo(text: str) -> str | None:
    """The CPU named by /proc/cpuinfo text: ARM cores by part number, else the "model name"."""
    names, arm_cores, implementer = [], Counter(), None
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        key = key.lower()
        if key == "model name":
            names.append(value)
        elif key == "cpu implementer":
            implementer = value
        elif key == "cpu part" and implementer == "0x41":
            arm_cores[_ARM_CORES.get(value, f"ARM part {value}")] += 1
    if arm_cores:
        if len(arm_cores) == 1:
            return next(iter(arm_cores))
        return " + ".join(f"{count}× {core}" for core, count in sorted(arm_cores.items()))
    return names[0] if names else None


def _macos_cpu() -> str | None:
    if sys.platform != "darwin":
        return None
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def os_description() -> str:
    """Distribution and kernel, e.g. 'Debian GNU/Linux 12 (bookworm); Linux 6.6.51'."""
    kernel = f"{platform.system()} {platform.release()}".strip()
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{line.split('=', 1)[1].strip(chr(34))}; {kernel}"
    return platform.platform(terse=True) or kernel


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def git_commit() -> str | None:
    """HEAD of the checkout this package runs from, or None: no git, no checkout (a copy on a
    device, an installed wheel) or a checkout of some other project around it."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.splitlines()
    if len(lines) != 2 or Path(lines[0]).resolve() != root:
        return None
    return lines[1]


def runtime_versions() -> dict[str, str | None]:
    """The version of each runtime that imports, None for those that do not; a fallback module
    is named with its version ("tflite-runtime 2.13.0")."""
    versions: dict[str, str | None] = {}
    for name, choices in RUNTIME_MODULES.items():
        versions[name] = None
        for rank, (module, dist) in enumerate(choices):
            try:
                importlib.import_module(module)
            except Exception:  # a broken install counts as missing
                continue
            try:
                from importlib.metadata import version as dist_version

                version = dist_version(dist)
            except Exception:
                version = "unknown"
            versions[name] = f"{dist} {version}" if rank else version
            break
    return versions


def probe() -> dict[str, object]:
    """This machine's facts for `payattn devices check`."""
    return {"arch": platform.machine(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "memory_bytes": memory_bytes(), "os": os_description(), "kernel": platform.release(),
            "python": platform.python_version(), "python_executable": sys.executable,
            "runtimes": runtime_versions(), "emulated": emulated()}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    print(json.dumps(probe()))
