"""Export a run dir to an artifact dir: ONNX, builtin-only TFLite per precision, manifest.

    from payattn.export import export
    export(run_dir, out_dir) -> Manifest

The pipeline lives in `payattn.export.main`; this package face imports it (and with it torch,
onnx and the converters) only when one of its names is first used, so a command that merely
reads a .tflite (`payattn inspect`) stays light.
"""

import importlib
from typing import Any

# Exported name -> its module (a submodule, or a payattn module by full name), imported on first use.
_EXPORTS = {
    "ARTIFACT_FILES": "main", "DEFAULT_PRECISIONS": "main", "PartialExport": "main",
    "check_export_target": "main", "export": "main", "Manifest": "manifest",
    "PRECISIONS": "main", "parse_precisions": "payattn.mechanisms", "ROADS": "roads",
    "choose_roads": "roads",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        # Submodules (payattn.export.verify, ...) resolve through the import system first; this
        # is reached only for a name that is neither a submodule nor an export.
        raise AttributeError(f"module 'payattn.export' has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(importlib.import_module(module if "." in module else f"payattn.export.{module}"), name)
