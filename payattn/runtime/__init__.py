"""Load exported artifacts into ONNX Runtime or LiteRT and time them.

This package imports numpy and the runtimes only (never torch, TensorFlow or other payattn
modules but `payattn.__version__`), because it is copied to a device as it is and run there with
`python -m payattn.runtime JOB.json`.
"""

from payattn.runtime.artifacts import Artifact, load_artifact
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.job import run_job
from payattn.runtime.results import append_results, validate_result
from payattn.runtime.runners import RUNTIMES, Runner, make_inputs, open_runner
from payattn.runtime.timing import summarize

__all__ = [
    "RUNTIMES",
    "Artifact",
    "Runner",
    "RuntimeJobError",
    "append_results",
    "load_artifact",
    "make_inputs",
    "open_runner",
    "run_job",
    "summarize",
    "validate_result",
]
