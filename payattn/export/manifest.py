"""manifest.json: everything an app or the benchmark needs to use an artifact dir correctly.

The format is payattn.runtime's `payattn.manifest/1` (schemas/manifest.schema.json), shared with
bench and the devices; this module builds its parts, checks them strictly before writing and
reads them back through the runtime's reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from payattn.errors import PayattnError
from payattn.files import write_file_atomic
from payattn.runtime.artifacts import FILE, load_manifest, sha256_file
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import MANIFEST

SCHEMA = MANIFEST.id
if TYPE_CHECKING:  # verify imports torch; reading a manifest must not
    from payattn.export.verify import Check

# Distribution names, so reading versions never imports TensorFlow.
_DISTRIBUTIONS = {
    "torch": ("torch",), "onnx": ("onnx",), "onnxruntime": ("onnxruntime",),
    "onnxslim": ("onnxslim",), "onnx2tf": ("onnx2tf",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"), "ai_edge_litert": ("ai-edge-litert",),
    "litert_torch": ("litert-torch",), "ai_edge_quantizer": ("ai-edge-quantizer",),
}


@dataclass
class Manifest:
    """A manifest document; `data` is the JSON object exactly as written."""

    data: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        return self.data["artifacts"]

    def artifact(self, precision: str, fmt: str = "tflite", variant: str = "as-trained") -> dict[str, Any]:
        """The entry of the `fmt` artifact at `precision` (the ONNX one is fp32); `variant`
        "app" picks a vision model's app form."""
        for entry in self.artifacts:
            if (entry["format"], entry["precision"], entry.get("variant", "as-trained")) == (fmt, precision, variant):
                return entry
        have = ", ".join(f"{e['format']} {e['precision']}" for e in self.artifacts)
        raise PayattnError(f"no {fmt} {precision} artifact in this manifest; it has {have}")

    def write(self, directory: Path) -> Path:
        """Write manifest.json into `directory`, after a strict check against the format."""
        path = Path(directory) / FILE
        problem = MANIFEST.problem(self.data, strict=True)
        if problem:
            raise PayattnError(f"the manifest for {directory} does not follow {SCHEMA}: {problem}")
        return write_file_atomic(path, json.dumps(self.data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        """Read `path` (a manifest.json or the artifact dir holding one)."""
        try:
            return cls(load_manifest(path))
        except RuntimeJobError as exc:
            raise PayattnError(str(exc)) from None


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def versions() -> dict[str, str | None]:
    """Versions of the toolchain that produced (and verified) the artifacts."""
    found: dict[str, str | None] = {}
    for key, names in _DISTRIBUTIONS.items():
        found[key] = None
        for name in names:
            try:
                found[key] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def artifact_entry(
    path: Path, check: Check, converter: str, operator_counts: dict[str, int], fmt: str,
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    """One `artifacts` item, from the file, the converter that wrote it and the figures
    verify.check measured for it."""
    return {
        "file": path.name, "format": fmt, "converter": converter, "precision": check.precision,
        "bytes": path.stat().st_size, "sha256": sha256_file(path),
        "operators": sorted(operator_counts), "operator_count": sum(operator_counts.values()),
        "operator_counts": operator_counts,
        "inputs": inputs, "outputs": outputs,
        "parity": check.parity, "test_accuracy": check.test_accuracy,
    }
