"""On-device parity: run an artifact on the reference inputs stored at export time and compare
its outputs with PyTorch's, held to the tolerances the export itself applied.

The artifact dir carries the inputs (PyTorch layout, batch axis first) and PyTorch's outputs as
.npy files listed under the manifest's "reference" key, with their sha256, and the manifest's
"verification" records the limits: max abs difference per precision and the top-1 agreement
floor. So any device checks its own answers with numpy and its runtime alone, no torch. A
parity job (`"task": "verify"`) emits one payattn.parity/1 line (schemas/parity.schema.json)
per artifact and runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from payattn import __version__
from payattn.runtime.artifacts import Artifact, load_artifact, sha256_file
from payattn.runtime.env import device_info
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import JOB, PARITY
from payattn.runtime.readers import check_tflite, read_npy, regular_file
from payattn.runtime.runners import (check_runtime, executorch_method, load_error, ort_session_options,
                                     quiet_native_stderr, runtime_module, runtime_version,
                                     usable_runtimes)

PARITY_SCHEMA = PARITY.id
REFERENCE_FILES = {"inputs": "reference_inputs.npy", "outputs": "reference_outputs.npy"}
THREADS = 1  # export verifies with these runners too: deterministic, and fair to other processes
_EXPORT_HINT = "export the model again with `payattn export`"


@dataclass(frozen=True)
class Reference:
    """PyTorch's answers: `inputs` in PyTorch layout, the first `random_inputs` of them random,
    the rest real test samples (top-1 agreement is counted on those)."""

    inputs: np.ndarray
    outputs: np.ndarray
    random_inputs: int


def reference_paths(manifest_path: Path, manifest: dict[str, Any]) -> list[Path]:
    """The reference files the manifest lists (empty for an artifact dir exported without them)."""
    listed = manifest.get("reference") or {}
    return [manifest_path.parent / listed[key]["file"] for key in REFERENCE_FILES if key in listed]


def load_reference(artifact: Artifact) -> Reference:
    """Read and check the reference files beside the artifact's manifest."""
    listed = artifact.manifest.get("reference")
    where = artifact.manifest_path
    if not isinstance(listed, dict) or not all(isinstance(listed.get(k), dict) for k in REFERENCE_FILES):
        raise RuntimeJobError(f"{where} lists no reference inputs and outputs (exported by an older payattn); "
                              f"{_EXPORT_HINT}")
    arrays = {}
    for key in REFERENCE_FILES:
        name = listed[key].get("file")
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise RuntimeJobError(f"{where} names the reference {key} file {name!r}, not a file beside "
                                  f"it; {_EXPORT_HINT}")
        path = regular_file(where.parent / name, f"reference {key}", _EXPORT_HINT)
        if sha256_file(path) != listed[key].get("sha256"):
            raise RuntimeJobError(f"{path} differs from its sha256 in {where}; {_EXPORT_HINT}")
        arrays[key] = read_npy(path, f"reference {key}", _EXPORT_HINT)
    inputs, outputs, n_random = arrays["inputs"], arrays["outputs"], listed.get("random_inputs")
    if inputs.ndim < 2 or outputs.ndim != 2 or not len(inputs) or len(inputs) != len(outputs) \
            or type(n_random) is not int or not 0 <= n_random < len(inputs):
        raise RuntimeJobError(f"{where}: the reference inputs {inputs.shape} and outputs {outputs.shape} "
                              f"do not match ({n_random!r} random inputs); {_EXPORT_HINT}")
    return Reference(inputs, outputs, n_random)


def figures(reference: np.ndarray, logits: np.ndarray, random_inputs: int) -> dict[str, Any]:
    """Max abs output difference over every sample, top-1 agreement over the test samples."""
    test_ref, test_out = reference[random_inputs:], logits[random_inputs:]
    return {
        "max_abs_diff": float(np.abs(logits - reference).max()),
        "top1_agreement": float((test_out.argmax(1) == test_ref.argmax(1)).mean()),
        "samples": int(len(logits)),
    }


def problems(file: str, precision: str, parity: dict[str, Any], limit: float | None,
             floor: float | None, test_samples: int) -> list[str]:
    """The checks `parity` misses, each with its figures; empty when it passes. NaN fails."""
    found = []
    if limit is not None and not parity["max_abs_diff"] <= limit:
        found.append(f"{file}: max abs logit difference {parity['max_abs_diff']:.3g} vs PyTorch "
                     f"exceeds the {precision} tolerance {limit:.3g}")
    if floor is not None and not parity["top1_agreement"] >= floor:
        found.append(f"{file}: top-1 agreement with PyTorch {parity['top1_agreement']:.2%} is "
                     f"below {floor:.0%} on {test_samples} test samples")
    return found


def app_pixels(x: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """Normalised images [N, C, H, W] back to the RGB pixels (0-255, float32, NCHW) they came
    from: the input of a vision model's app form, which normalises in its graph. A gray
    pixel is given in all three channels."""
    shape = (1, -1, 1, 1)
    pixels = (x * np.reshape(std, shape) + np.reshape(mean, shape)) * 255
    return np.repeat(pixels, 3 // x.shape[1], axis=1).astype(np.float32)


def predictor(artifact: Artifact, runtime: str) -> Callable[[np.ndarray], np.ndarray]:
    """A batch-1 call taking PyTorch-layout input: NHWC TFLite inputs are fed transposed, an
    app form (variant "app") gets the pixels the normalised input came from."""
    check_runtime(runtime)
    path, spec = artifact.path, artifact.inputs[0]
    try:
        plain = predictor_for(path, spec, runtime)
    except RuntimeJobError:
        raise
    except Exception as exc:  # each runtime raises its own types for a file it cannot load
        raise load_error(path, runtime, exc) from None
    if artifact.entry.get("variant") == "app":
        pre = artifact.manifest["preprocessing"]
        return lambda x: plain(app_pixels(x, pre["mean"], pre["std"]))
    return plain


def predictor_for(path: Path, spec: dict[str, Any], runtime: str) -> Callable[[np.ndarray], np.ndarray]:
    """predictor() for one file and its input spec, fed as the spec says."""
    if runtime == "onnxruntime":
        return onnxruntime_call(onnxruntime_session(path), spec["name"])
    if runtime == "executorch":
        return executorch_call(executorch_method(path, THREADS), spec["dtype"])
    return litert_call(litert_interpreter(path), spec.get("layout") == "NHWC")


def onnxruntime_session(path: Path) -> Any:
    """An ONNX Runtime session as parity checks open it, here and in export's verification."""
    ort = runtime_module("onnxruntime")
    return ort.InferenceSession(str(path), ort_session_options(THREADS), providers=["CPUExecutionProvider"])


def onnxruntime_call(session: Any, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """A call feeding one array to the session's input `name`, returning its first output."""
    return lambda x: session.run(None, {name: x})[0]


def executorch_call(method: Any, dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    """A call on an ExecuTorch method's one input and output; its binding takes torch tensors."""
    import torch  # ExecuTorch has imported it already

    return lambda x: method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))])[0].numpy()


def litert_interpreter(path: Path) -> Any:
    """A LiteRT interpreter as parity checks open it, tensors allocated; its delegate's
    announcement is kept off stderr, where it would break progress output."""
    check_tflite(path, _EXPORT_HINT)  # LiteRT itself reads a damaged file out of bounds
    with quiet_native_stderr():
        interpreter = runtime_module("litert").Interpreter(model_path=str(path), num_threads=THREADS)
        interpreter.allocate_tensors()
    return interpreter


def litert_call(interpreter: Any, nhwc: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A call on the interpreter's one input and output; `nhwc`: feed NCHW arrays transposed."""
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1) if nhwc else x))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return run


def run_each(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """`run` on every sample of `x` as a batch of one (artifacts have static batch-1 shapes),
    outputs concatenated."""
    return np.concatenate([run(x[i:i + 1]) for i in range(len(x))])


def check_artifact(artifact: Artifact, runtime: str, device: dict[str, Any]) -> dict[str, Any]:
    """Run the reference inputs through one artifact; return its payattn.parity/1 line."""
    reference = load_reference(artifact)
    run = predictor(artifact, runtime)
    try:
        logits = run_each(run, reference.inputs)
    except Exception as exc:
        raise RuntimeJobError(f"{artifact.path}: running the reference inputs in {runtime} failed: "
                              f"{' '.join(str(exc).split())[:200]}") from None
    parity = {**figures(reference.outputs, logits, reference.random_inputs),
              "random_inputs": reference.random_inputs}
    verification = artifact.manifest.get("verification") or {}
    limit = (verification.get("max_abs_diff") or {}).get(artifact.precision)
    floor = (verification.get("min_top1_agreement") or {}).get(artifact.precision)
    missed = problems(artifact.path.name, artifact.precision, parity, limit, floor,
                      len(reference.inputs) - reference.random_inputs)
    line = {
        "schema": PARITY_SCHEMA,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "payattn_version": __version__,
        "artifact": {"path": str(artifact.path), "file": artifact.path.name, "sha256": artifact.sha256,
                     "format": artifact.format, "precision": artifact.precision},
        "mechanism": artifact.manifest["mechanism"],
        "runtime": {"name": runtime, "version": runtime_version(runtime)},
        "device": device,
        "parity": parity,
        "limits": {"max_abs_diff": limit, "min_top1_agreement": floor},
        "export_parity": artifact.entry.get("parity"),
        "passed": not missed,
        "problems": missed,
    }
    PARITY.check(line, strict=True)  # a slip fails here, on the device, not in the host's table
    return line


def run_verify_job(job: dict[str, Any], on_result: Callable[[dict[str, Any]], None] | None = None,
                   log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """A job (job.schema.json) with "task": "verify": its artifacts checked in its runtimes;
    the timing settings are not used."""
    log = log or (lambda message: None)
    JOB.check(job, strict=True)
    artifacts = [load_artifact(item["path"], item.get("manifest")) for item in job["artifacts"]]
    needed = [a.runtime for a in artifacts if a.runtime in job["runtimes"]]
    runtimes = usable_runtimes(job["runtimes"], needed, log)
    info = device_info(job["device"]["name"], job["device"]["kind"])
    lines = []
    for artifact in artifacts:
        if artifact.runtime not in runtimes:
            continue
        log(f"checking {artifact.path} in {artifact.runtime} against PyTorch's outputs")
        line = check_artifact(artifact, artifact.runtime, info)
        lines.append(line)
        if on_result:
            on_result(line)
    if not lines:
        raise RuntimeJobError(f"none of the artifacts runs on runtime(s) {runtimes}; choose matching runtimes")
    return lines
