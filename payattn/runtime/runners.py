"""ONNX Runtime, LiteRT and ExecuTorch behind one small interface: open an artifact, feed it,
run it.

`open_runner` creates the session, interpreter or method with explicit threads, checks the
model's inputs against the manifest's input spec, binds seeded inputs once and returns a
`Runner` whose `run()` is one inference and nothing else, as TFLite's benchmark_model and
onnxruntime_perf_test time it: `Interpreter.invoke` for LiteRT, `run_with_iobinding` for ONNX
Runtime (its inputs bound once, so no per-call conversion of a feed dict is timed), and
`Method.execute` on tensors made once for ExecuTorch (its Python binding takes only torch
tensors, so ExecuTorch alone brings torch in). The runtimes are imported lazily, so a device
with only one of them installed can still run the others.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from payattn.runtime.env import RUNTIME_MODULES
from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.formats import DEFAULT_GRAPH_OPTIMIZATION, INPUT_DTYPES, ORT_LEVELS, RUNTIMES
from payattn.runtime.readers import check_tflite

FORMAT_RUNTIME = {"onnx": "onnxruntime", "tflite": "litert", "pte": "executorch"}
_MODULES = {runtime: tuple(module for module, _ in RUNTIME_MODULES[runtime]) for runtime in RUNTIMES}
# A .pte runs only in the ExecuTorch release that wrote it (its flatbuffer and delegate
# formats are versioned together), so the install names the exporter's release.
PIP_PACKAGES = {runtime: RUNTIME_MODULES[runtime][0][1] for runtime in RUNTIMES}
INSTALL = {**PIP_PACKAGES, "executorch": "executorch==1.5.1"}
# One seed for every artifact: mechanisms compared on the same task see the same inputs.
INPUT_SEED = 0
# What LiteRT's C++ core prints on stderr, unasked, when it creates its default CPU delegate.
NATIVE_NOISE = re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.\s*$")
# What ExecuTorch's runtime prints on stderr, unasked, while it sizes its thread pool.
EXECUTORCH_NOISE = re.compile(r"\[(cpuinfo_utils|threadpool)\.cpp:\d+\] ")
# ExecuTorch's MethodMeta dtype codes (c10::ScalarType) for the dtypes a manifest input can have.
_EXECUTORCH_DTYPES = {3: "int32", 4: "int64", 5: "float16", 6: "float32"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


@dataclass(frozen=True)
class Runner:
    """An artifact loaded into one runtime with fixed inputs; `run()` is one inference."""

    runtime: str
    version: str
    graph_optimization: str | None
    threads: int
    path: Path
    init_ms: float  # session/interpreter creation plus tensor allocation
    inputs: dict[str, np.ndarray]  # what every run sees; held here because the runtime may point into it
    run: Callable[[], Any]


@dataclass(frozen=True)
class ModelInput:
    """One input as the model declares it; `key` identifies it when it is known by two names,
    and None in `shape` marks a dynamic dimension."""

    key: object
    shape: list[int | None]
    dtype: str


def make_inputs(specs: Sequence[dict[str, Any]], seed: int = INPUT_SEED) -> dict[str, np.ndarray]:
    """Inputs for a manifest's input spec: standard normal floats in the stated shape (already
    in the stated layout), integer ids uniform in [low, high) for tokens; seeded."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in specs:
        shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
        if dtype.kind == "f":
            arrays[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            arrays[spec["name"]] = rng.integers(spec["low"], spec["high"], size=shape, dtype=dtype)
    return arrays


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise RuntimeJobError(f"unknown runtime {runtime!r}; valid runtimes: {', '.join(RUNTIMES)}")


def quiet_library_logs() -> None:
    """Keep off stderr what torchao (which ExecuTorch and litert-torch import) logs on import:
    each CUDA kernel library it cannot load on a CPU-only machine, and torch's deprecation
    notice about torchao's own enum registration. Neither concerns a CPU run."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def runtime_module(runtime: str) -> Any:
    """Import a runtime on demand; a missing one is an error naming the pip package."""
    check_runtime(runtime)
    quiet_library_logs()
    for name in _MODULES[runtime]:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            error = exc
    raise RuntimeJobError(
        f"{runtime} is not installed here ({error}); install it with `pip install {INSTALL[runtime]}`"
    ) from None


def usable_runtimes(runtimes: Sequence[str], needed: Sequence[str],
                    log: Callable[[str], None]) -> list[str]:
    """The `runtimes` that import here. One that does not is said once (its install line)
    and left out, so the others still run; when every artifact (`needed`: each one's
    runtime) needs it, its install line is the job's error instead."""
    usable = []
    for runtime in runtimes:
        try:
            runtime_module(runtime)
        except RuntimeJobError as exc:
            if needed and all(r == runtime for r in needed):
                raise
            if runtime in needed:
                log(f"{exc}; its artifacts are skipped")
            continue
        usable.append(runtime)
    return usable


def runtime_version(runtime: str) -> str:
    """The version of the package that provides `runtime`; the 32-bit fallback says its name."""
    module = runtime_module(runtime)  # a missing runtime is the clear error, not a version lookup failure
    top = module.__name__.split(".")[0]
    version = getattr(importlib.import_module(top), "__version__", None)
    if top == "tflite_runtime":
        return f"tflite-runtime {version or metadata.version('tflite-runtime')}"
    return str(version or metadata.version(PIP_PACKAGES[runtime]))


def open_runner(runtime: str, path: str | Path, inputs: Sequence[dict[str, Any]], threads: int = 1,
                graph_optimization: str = DEFAULT_GRAPH_OPTIMIZATION) -> Runner:
    """Load `path` into `runtime` with `threads` threads and bind inputs made from `inputs`
    (a manifest's input spec). Raises RuntimeJobError naming the file when it cannot be loaded
    or its inputs differ from the spec."""
    path = Path(path)
    check_runtime(runtime)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise RuntimeJobError(f"threads must be a positive integer, got {threads!r}")
    check_input_specs(inputs, str(path))
    feeds = make_inputs(inputs)
    if runtime == "onnxruntime":
        return _open_onnxruntime(path, inputs, feeds, threads, graph_optimization)
    if runtime == "executorch":
        return _open_executorch(path, inputs, feeds, threads)
    return _open_litert(path, inputs, feeds, threads)


def check_input_specs(specs: Any, where: str) -> None:
    """A manifest's input spec must be complete enough to make inputs from; `where` names it."""
    fix = "re-export the artifact"
    if not isinstance(specs, list) or not specs:
        raise RuntimeJobError(f"{where}: the manifest lists no inputs; {fix}")
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise RuntimeJobError(f"{where}: manifest input {spec!r} has no name; {fix}")
        shape, dtype = spec.get("shape"), spec.get("dtype")
        if not isinstance(shape, list) or not all(type(d) is int and d > 0 for d in shape):
            raise RuntimeJobError(f"{where}: manifest input {spec['name']!r} needs a shape of positive "
                                  f"integers, got {shape!r}; {fix}")
        if dtype not in INPUT_DTYPES:
            raise RuntimeJobError(f"{where}: manifest input {spec['name']!r} has dtype {dtype!r}; "
                                  f"valid dtypes: {', '.join(INPUT_DTYPES)}; {fix}")
        if np.dtype(dtype).kind != "f":
            low, high = spec.get("low"), spec.get("high")
            if type(low) is not int or type(high) is not int or low >= high:
                raise RuntimeJobError(f"{where}: manifest input {spec['name']!r} ({dtype}) needs integer "
                                      f"'low' < 'high' for its ids, got {low!r}, {high!r}; {fix}")


def load_error(path: Path, runtime: str, exc: BaseException) -> RuntimeJobError:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return RuntimeJobError(f"cannot load {path} with {runtime}: {first_line}; "
                           f"the file is corrupt or not a model for {runtime}: re-export the artifact")


def ort_session_options(threads: int, level: str = DEFAULT_GRAPH_OPTIMIZATION) -> Any:
    """ONNX Runtime settings for every session payattn opens (timed, profiled, parity), so a
    profile or a parity check sees the model as the timed runs do: `threads` intra-op
    threads, one inter-op thread, sequential execution, graph optimisation `level` (a name of
    ort.GraphOptimizationLevel)."""
    ort = runtime_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3  # errors only: progress owns stderr
    return options


def _open_onnxruntime(path: Path, specs: Sequence[dict[str, Any]], feeds: dict[str, np.ndarray],
                      threads: int, level: str) -> Runner:
    ort = runtime_module("onnxruntime")
    if level not in ORT_LEVELS:
        raise RuntimeJobError(f"unknown graph optimisation level {level!r}; "
                              f"valid levels: {', '.join(ORT_LEVELS)}")
    options = ort_session_options(threads, level)
    start = time.perf_counter_ns()
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise load_error(path, "onnxruntime", exc) from None
    init_ms = (time.perf_counter_ns() - start) / 1e6
    model = {i.name: ModelInput(i.name, [d if isinstance(d, int) and d >= 0 else None for d in i.shape],
                                _ORT_DTYPES.get(i.type, i.type)) for i in session.get_inputs()}
    _check_inputs(path, specs, model)
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_cpu_input(name, array)
    for output in session.get_outputs():
        binding.bind_output(output.name)
    return Runner("onnxruntime", runtime_version("onnxruntime"), level, threads, path, init_ms, feeds,
                  partial(session.run_with_iobinding, binding))


def _open_litert(path: Path, specs: Sequence[dict[str, Any]], feeds: dict[str, np.ndarray],
                 threads: int) -> Runner:
    interpreter_module = runtime_module("litert")
    check_tflite(path, "re-export the artifact")  # LiteRT itself reads a damaged file out of bounds
    start = time.perf_counter_ns()
    try:
        with quiet_native_stderr():
            interpreter = interpreter_module.Interpreter(model_path=str(path), num_threads=threads)
        details = _litert_inputs(interpreter)
    except Exception as exc:
        raise load_error(path, "litert", exc) from None
    model = {name: ModelInput(d["index"], [int(x) if x >= 0 else None for x in d["shape_signature"]],
                              np.dtype(d["dtype"]).name) for name, d in details.items()}
    _check_inputs(path, specs, model)
    try:
        for spec in specs:
            detail = details[spec["name"]]
            if list(detail["shape"]) != list(spec["shape"]):  # a dynamic dimension: fix it to the spec
                interpreter.resize_tensor_input(detail["index"], list(spec["shape"]))
        with quiet_native_stderr():
            interpreter.allocate_tensors()
    except Exception as exc:
        raise load_error(path, "litert", exc) from None
    init_ms = (time.perf_counter_ns() - start) / 1e6
    for spec in specs:
        interpreter.set_tensor(details[spec["name"]]["index"], feeds[spec["name"]])
    return Runner("litert", runtime_version("litert"), None, threads, path, init_ms, feeds,
                  interpreter.invoke)


def executorch_method(path: Path, threads: int) -> Any:
    """An ExecuTorch `forward` method loaded from `path`, on a thread pool of `threads`
    threads (ExecuTorch's default is one per core; the pool is process-wide)."""
    runtime = runtime_module("executorch")
    from executorch.extension.pybindings import portable_lib

    with quiet_native_stderr(EXECUTORCH_NOISE):
        portable_lib._unsafe_reset_threadpool(threads)
        return runtime.Runtime.get().load_program(path).load_method("forward")


def _open_executorch(path: Path, specs: Sequence[dict[str, Any]], feeds: dict[str, np.ndarray],
                     threads: int) -> Runner:
    runtime_module("executorch")  # its import (torch's too) is no part of this file's init time
    start = time.perf_counter_ns()
    try:
        method = executorch_method(path, threads)
    except Exception as exc:
        raise load_error(path, "executorch", exc) from None
    init_ms = (time.perf_counter_ns() - start) / 1e6
    meta = method.metadata
    found = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
    names = [spec["name"] for spec in specs] + [f"input {i}" for i in range(len(specs), len(found))]
    model = {name: ModelInput(i, list(t.sizes()), _EXECUTORCH_DTYPES.get(t.dtype(), str(t.dtype())))
             for i, (name, t) in enumerate(zip(names, found))}  # a .pte names no inputs: by position
    _check_inputs(path, specs, model)
    import torch  # ExecuTorch has imported it already

    tensors = [torch.from_numpy(feeds[spec["name"]]) for spec in specs]
    return Runner("executorch", runtime_version("executorch"), None, threads, path, init_ms, feeds,
                  partial(method.execute, tensors))


@contextlib.contextmanager
def quiet_native_stderr(noise: re.Pattern[str] = NATIVE_NOISE) -> Iterator[None]:
    """Hold back what native code writes to file descriptor 2 in the block, then pass on every
    line but `noise`: LiteRT announces its delegate from C++, past Python's sys.stderr, and the
    line would break progress output. Real warnings and errors still reach stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not noise.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _litert_inputs(interpreter: Any) -> dict[str, dict[str, Any]]:
    """Input details by tensor name and, when the model has one signature, by signature name:
    converters name tensors 'serving_default_x:0' while the signature calls them 'x'."""
    by_index = {d["index"]: d for d in interpreter.get_input_details()}
    named = {d["name"]: d for d in by_index.values()}
    signatures = interpreter.get_signature_list()
    if len(signatures) == 1:
        runner = interpreter.get_signature_runner(next(iter(signatures)))
        for name, detail in runner.get_input_details().items():
            if detail["index"] in by_index:
                named.setdefault(name, by_index[detail["index"]])
    return named


def _check_inputs(path: Path, specs: Sequence[dict[str, Any]], model: dict[str, ModelInput]) -> None:
    """The manifest must list the model's inputs exactly: names, dtypes and every fixed dimension."""
    fix = "re-export the artifact so that manifest.json describes the model"
    missing = [spec["name"] for spec in specs if spec["name"] not in model]
    if missing:
        raise RuntimeJobError(f"{path}: the manifest lists input(s) {missing} that the model does not have "
                              f"(model inputs: {sorted(model)}); {fix}")
    listed = {model[spec["name"]].key for spec in specs}
    extra = sorted(name for name, found in model.items() if found.key not in listed)
    if extra:
        raise RuntimeJobError(f"{path}: the model has input(s) {extra} that the manifest does not list; "
                              f"{fix}")
    for spec in specs:
        found = model[spec["name"]]
        fixed_ok = len(found.shape) == len(spec["shape"]) and all(
            m is None or m == s for m, s in zip(found.shape, spec["shape"]))
        if found.dtype != spec["dtype"] or not fixed_ok:
            shown = ["?" if m is None else m for m in found.shape]
            raise RuntimeJobError(f"{path}: input {spec['name']!r} is {found.dtype}{shown} in the model but "
                                  f"{spec['dtype']}{list(spec['shape'])} in the manifest; {fix}")
