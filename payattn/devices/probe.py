"""Describe the machine this runs on: CPU, cores, memory, OS and the importable runtimes.

Standard library only and self-contained: `payattn devices check` sends this file's source to a
device's Python on stdin (`python3 -`), before payattn or numpy may exist there, and prints
one JSON object on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys

# What payattn.runtime imports on a device: name -> (module, distribution that installs it).
RUNTIME_MODULES = {
    "numpy": ("numpy", "numpy"),
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
}


def cpu_model() -> str:
    """The CPU's marketing name (x86 'model name', Raspberry Pi 'Model', else 'Hardware')."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                key, sep, value = line.partition(":")
                if sep and value.strip():
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if key in fields:
            return fields[key]
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def runtime_versions() -> dict[str, str | None]:
    """The version of each runtime module that imports, None for those that do not."""
    versions: dict[str, str | None] = {}
    for name, (module, dist) in RUNTIME_MODULES.items():
        try:
            importlib.import_module(module)
        except Exception:  # a broken install counts as missing
            versions[name] = None
            continue
        try:
            from importlib.metadata import version as dist_version

            versions[name] = dist_version(dist)
        except Exception:
            versions[name] = "unknown"
    return versions


def probe() -> dict:
    return {
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "runtimes": runtime_versions(),
    }


if __name__ == "__main__":
    print(json.dumps(probe()))
