"""Artifacts as the manifest describes them, checked against the files on disk."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import MANIFEST
from payattn.runtime.readers import read_json
from payattn.runtime.runners import FORMAT_RUNTIME, check_input_specs

MANIFEST_SCHEMA = MANIFEST.id
FILE = "manifest.json"
_EXPORT_HINT = "export the model again with `payattn export`"


@dataclass(frozen=True)
class Artifact:
    """One exported model file with its manifest entry, verified against its sha256."""

    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    entry: dict[str, Any]
    sha256: str
    bytes: int

    @property
    def format(self) -> str:
        return self.entry["format"]

    @property
    def precision(self) -> str:
        return self.entry["precision"]

    @property
    def runtime(self) -> str:
        return FORMAT_RUNTIME[self.format]

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.entry["inputs"]


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest.json (or the artifact dir holding one), rejecting anything that is not a
    payattn.manifest/1 document; keys a newer payattn added are ignored."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    if not path.exists():
        where = path.parent
        problem = "has no manifest.json, so it is not an artifact dir" if where.exists() else "does not exist"
        raise RuntimeJobError(f"{where} {problem}; {_EXPORT_HINT}")
    manifest = read_json(path, "manifest", _EXPORT_HINT)
    schema = manifest.get("schema")
    if schema != MANIFEST_SCHEMA:
        raise RuntimeJobError(f"{path} has schema {schema!r}, expected {MANIFEST_SCHEMA!r}; {_EXPORT_HINT}")
    problem = MANIFEST.problem(manifest, strict=False)
    if problem:
        raise RuntimeJobError(f"{path}: {problem}; {_EXPORT_HINT}")
    return manifest


def load_artifact(path: str | Path, manifest_path: str | Path | None = None) -> Artifact:
    """The artifact at `path` and its entry in `manifest_path` (default: manifest.json beside it).
    A missing, truncated or changed file is an error before any runtime sees it."""
    path = Path(path)
    manifest_path = Path(manifest_path) if manifest_path else path.parent / FILE
    manifest = load_manifest(manifest_path)
    entry = next((e for e in manifest["artifacts"] if e.get("file") == path.name), None)
    if entry is None:
        listed = [e.get("file") for e in manifest["artifacts"]]
        raise RuntimeJobError(f"{manifest_path} has no entry for {path.name} (it lists {listed}); "
                              f"pick one of those files or {_EXPORT_HINT}")
    if not path.is_file():
        raise RuntimeJobError(f"{path} is listed in {manifest_path} but missing; {_EXPORT_HINT}")
    size, digest = path.stat().st_size, sha256_file(path)
    if (size, digest) != (entry["bytes"], entry["sha256"]):
        raise RuntimeJobError(f"{path} is {size} bytes with sha256 {digest[:12]}… but {manifest_path} "
                              f"records {entry['bytes']} bytes, sha256 {entry['sha256'][:12]}…: the file is "
                              f"truncated or was changed; {_EXPORT_HINT}")
    check_input_specs(entry.get("inputs"), f"{manifest_path} ({path.name})")
    return Artifact(path, manifest_path, manifest, entry, digest, size)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (artifacts may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
