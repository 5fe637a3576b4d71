"""Load exported artifacts into ONNX Runtime or LiteRT and time them.

This package imports numpy and the runtimes only (never torch, TensorFlow or other payattn
modules but `payattn.__version__`), because it is copied to a device as it is and run there with
`python -m payattn.runtime JOB.json`.
"""

import importlib
from typing import Any

# Exported name -> its module, imported on first use: the CLI's light commands load
# payattn.runtime.errors and .formats without numpy or the runtimes.
_EXPORTS = {
    "Artifact": "artifacts", "load_artifact": "artifacts", "RuntimeJobError": "errors", "run_job": "job",
    "append_results": "results", "validate_result": "results", "RUNTIMES": "runners", "Runner": "runners",
    "make_inputs": "runners", "open_runner": "runners", "summarize": "timing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'payattn.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"payattn.runtime.{_EXPORTS[name]}"), name)
