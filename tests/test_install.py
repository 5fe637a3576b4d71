"""What `make install` resolves: torch's CPU build, one TensorFlow, no CUDA packages; and the
extras keep a device's install to numpy and the runtimes. A pip dry run of the Makefile's own
command (read from `make -n`), so the test follows the Makefile."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def makefile_pip_command() -> list[str]:
    out = subprocess.run(["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True, check=True)
    (line,) = [line for line in out.stdout.splitlines() if "pip install" in line and ".[test" in line]
    args = shlex.split(line)
    assert args[:4] == [".venv/bin/python", "-m", "pip", "install"], line
    return args[4:]


def resolve(args: list[str], tmp_path: Path) -> dict[str, str]:
    report = tmp_path / "report.json"
    args = [a for a in args if a not in ("-e", "--quiet")]
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in installs}


@pytest.mark.slow
def test_make_install_resolves_cpu_torch_and_no_cuda(tmp_path: Path) -> None:
    args = makefile_pip_command()
    assert "https://download.pytorch.org/whl/cpu" in args and "constraints.txt" in args
    resolved = resolve(args, tmp_path)
    gpu = sorted(name for name in resolved if re.search(r"nvidia|cuda|triton", name))
    assert gpu == [], gpu
    assert resolved["torch"].endswith("+cpu"), resolved["torch"]
    assert "tensorflow" in resolved and "tensorflow-cpu" not in resolved
    assert {"pytest", "jsonschema", "onnx2tf", "tf-keras"} <= set(resolved)


def test_device_extra_is_numpy_and_the_runtimes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=\[ ]", dep)[0] for dep in project["dependencies"] + project["optional-dependencies"]["device"]]
    assert names == ["numpy", "onnxruntime", "ai-edge-litert"]
    export = project["optional-dependencies"]["export"]
    assert not any(dep.startswith("tensorflow-cpu") for dep in export)


def test_constraints_pin_every_direct_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {line.split("==")[0].lower().replace("_", "-")
              for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    direct = [dep for group in [project["dependencies"], *project["optional-dependencies"].values()] for dep in group]
    names = {re.split(r"[<>=\[ ]", dep)[0].lower() for dep in direct} - {"payattn"}
    assert names <= pinned, sorted(names - pinned)
    assert "tensorflow-cpu" not in pinned
