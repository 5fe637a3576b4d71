"""Benchmark .tflite artifacts on an Android phone with TensorFlow Lite's `benchmark_model`.

The phone needs no Python: the user's `benchmark_model` binary and the .tflite files are pushed
to /data/local/tmp/payattn/ (only those whose sha256 differs from the copy already there), and
each artifact × thread count is one `benchmark_model --graph=… --num_threads=N --warmup_runs=…
--num_runs=…` run, optionally pinned with `taskset MASK` and with --use_xnnpack set. Its output
is parsed (payattn.devices.benchmark_model) into the same result lines as every other device;
device facts come from getprop, /proc/meminfo and /sys/devices/system/cpu/possible.

Without a binary of the user's, LiteRT's prebuilt one is fetched once (payattn.devices.prebuilt)
and its sha256 recorded in the registry; a later run whose cached file differs is refused. Each
accelerator asked for is its own run: cpu (XNNPACK, the tool's default) or gpu (`--use_gpu=true`,
precision loss off unless asked), and a gpu line carries how much of the graph the delegate took,
from the tool's own lines; a run where it took nothing writes no line, and the bench says so.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from payattn.devices.base import (
    DEFAULT_TIMEOUT_S,
    BenchRun,
    DeviceError,
    OnResult,
    Log,
    artifact_dir_key,
    ignore_log,
    last_error_line,
    load_job_artifacts,
    run_child,
    stream_process,
)
from payattn.devices.benchmark_model import (GPU_NOT_APPLIED, BenchmarkModelParseError, parse_benchmark_model,
                                             parse_gpu_delegation)
from payattn.devices.prebuilt import FetchSettings, cache_path, ensure_benchmark_model
from payattn.devices.registry import DeviceSpec, record_benchmark_model
from payattn.errors import PayattnError
from payattn.runtime import RuntimeJobError, validate_result
from payattn.runtime.artifacts import sha256_file
from payattn.runtime.profile import parse_benchmark_model as parse_op_profile
from payattn.runtime.results import artifact_fields

DEFAULT_REMOTE_DIR = "/data/local/tmp/payattn"
SECTION = "==payattn=="
BUILD_HINT = ("build it with `bazel build -c opt --config=android_arm64 "
              "//tensorflow/lite/tools/benchmark:benchmark_model` or download TensorFlow's prebuilt "
              "android_aarch64_benchmark_model, then re-add the device with --benchmark-model PATH "
              "(or without it, on an arm64 phone, to use LiteRT's prebuilt)")
# benchmark_model feeds the model inputs of its own and prints only timings, and payattn ships
# nothing else to the phone, so outputs cannot be compared with PyTorch's there.
ANDROID_PARITY = ("on-device parity is not available on Android: payattn runs only TFLite's "
                  "benchmark_model there, which does not return the model's outputs; check the "
                  "same .tflite on an SSH board or locally with `payattn verify`")


@dataclass(frozen=True)
class AdbSettings:
    """How to drive the phone: the adb executable, XNNPACK on/off (None: the tool's default),
    the folder on the phone, how long one benchmark_model run may take, the accelerators to
    run on (cpu, gpu), whether the GPU may compute in fp16, how to fetch LiteRT's prebuilt
    binary, and the registry to record it in."""

    adb: str = "adb"
    use_xnnpack: bool | None = None
    remote_dir: str = DEFAULT_REMOTE_DIR
    timeout: float = DEFAULT_TIMEOUT_S
    accelerators: tuple[str, ...] = ("cpu",)
    gpu_precision_loss: bool = False
    fetch: FetchSettings = field(default_factory=FetchSettings)
    devices_file: Optional[Path] = None


def parse_getprop(text: str) -> dict[str, str]:
    """`[key]: [value]` lines, as `adb shell getprop` prints them."""
    props = {}
    for line in text.splitlines():
        key, sep, value = line.partition("]: [")
        if sep and key.startswith("[") and value.endswith("]"):
            props[key[1:]] = value[:-1]
    return props


def parse_cpu_list(text: str) -> int | None:
    """Count the CPUs in a kernel CPU list such as `0-7` or `0-3,6`."""
    count = 0
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        if not low.strip().isdigit() or (high and not high.strip().isdigit()):
            return None
        count += int(high) - int(low) + 1 if high else 1
    return count or None


def gpu_check(artifact: Any) -> str:
    """What the export's static GPU check (the manifest's `gpu`, LiteRT's analyzer) had said."""
    gpu = artifact.entry.get("gpu") or {}
    if "compatible" not in gpu:
        return ""
    if gpu["compatible"]:
        return "; the export's GPU check had found the file compatible"
    issues = gpu.get("issues") or ["not compatible"]
    return f"; the export's GPU check had flagged it: {issues[0]}"


class AdbDevice:
    """A registered Android phone, reached with `adb -s SERIAL`."""

    kind = "adb"

    def __init__(self, spec: DeviceSpec, settings: AdbSettings = AdbSettings()) -> None:
        if spec.kind != "adb":
            raise DeviceError(spec.name, f"is a {spec.kind} device, not an adb one")
        self.spec = spec
        self.settings = settings
        self.remote = PurePosixPath(settings.remote_dir)

    def __enter__(self) -> AdbDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    # -- adb ----------------------------------------------------------------------------------

    def adb(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        argv = [self.settings.adb, "-s", self.spec.serial, *args]
        try:
            return run_child(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=timeout)
        except FileNotFoundError:
            raise DeviceError(self.spec.name, f"{self.settings.adb!r} is not installed here; install "
                                              "Android platform-tools (`apt-get install adb`) or put adb "
                                              "on PATH") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(self.spec.name, f"adb {' '.join(args)[:60]} did not answer within {timeout:.0f} s; "
                                              "reconnect the phone (`adb reconnect`)") from None

    def explain(self, output: str, mid_run: bool = False) -> str:
        """What an adb failure means, and the fix."""
        line = last_error_line(output.splitlines())
        serial = self.spec.serial
        if "unauthorized" in output:
            return (f"the phone {serial} has not authorised this computer; unlock it and accept the USB "
                    "debugging prompt")
        if "offline" in output:
            return f"the phone {serial} is offline; reconnect the cable or run `adb reconnect`"
        if mid_run and any(s in output for s in ("not found", "closed", "no devices", "protocol fault")):
            return (f"the phone {serial} disconnected mid-run ({line}); results measured so far are kept; "
                    "reconnect it and run again")
        if "not found" in output and "device" in output or "no devices" in output:
            return (f"no phone with serial {serial} is connected ({line}); plug it in, enable USB debugging "
                    "and check `adb devices`")
        return f"adb failed: {line}"

    def shell(self, command: str, what: str, timeout: float = 120.0) -> str:
        """Run a shell command on the phone; return its stdout, or raise naming `what` failed."""
        proc = self.adb("shell", command, timeout=timeout)
        if proc.returncode != 0:
            raise DeviceError(self.spec.name, f"{what}: {self.explain(proc.stdout + proc.stderr)}")
        return proc.stdout

    def check_connected(self) -> None:
        proc = self.adb("get-state", timeout=30)
        state = proc.stdout.strip()
        if proc.returncode != 0 or state != "device":
            raise DeviceError(self.spec.name, self.explain(proc.stdout + proc.stderr + state))

    # -- facts --------------------------------------------------------------------------------

    def probe(self) -> dict:
        """getprop, memory and CPU count in one shell command."""
        self.check_connected()
        text = self.shell(f"getprop; echo {SECTION}; cat /proc/meminfo; echo {SECTION}; "
                          "cat /sys/devices/system/cpu/possible", "reading the phone's properties")
        props_text, _, rest = text.partition(SECTION)
        meminfo, _, possible = rest.partition(SECTION)
        props = parse_getprop(props_text)
        memory = None
        for line in meminfo.splitlines():
            if line.startswith("MemTotal:") and line.split()[1].isdigit():
                memory = int(line.split()[1]) * 1024
        soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware") or "unknown"
        model = props.get("ro.product.model")
        release = props.get("ro.build.version.release")
        arch = props.get("ro.product.cpu.abi", "unknown")
        binary = self.spec.benchmark_model or str(cache_path(arch, self.settings.fetch))
        return {
            "arch": arch,
            "cpu": f"{soc} ({model})" if model else soc,
            "cores": parse_cpu_list(possible),
            "memory_bytes": memory,
            "os": f"Android {release}" if release else "Android",
            "benchmark_model": binary,
            "benchmark_model_found": Path(binary).expanduser().is_file(),
        }

    def device_info(self, facts: dict) -> dict[str, Any]:
        """The result line's device object."""
        return {"name": self.spec.name, "kind": "adb", "cpu": facts["cpu"], "cores": facts["cores"],
                "os": facts["os"], "arch": facts["arch"], "memory_bytes": facts["memory_bytes"],
                "emulated": None}

    # -- files --------------------------------------------------------------------------------

    def sync(self, files: list[tuple[Path, PurePosixPath]], log: Log = ignore_log) -> int:
        """Push the files whose sha256 differs from the phone's copy; return bytes pushed."""
        dirs = sorted({str(remote.parent) for _, remote in files})
        listing = self.shell(
            f"mkdir -p {' '.join(shlex.quote(d) for d in dirs)} && "
            f"(sha256sum {' '.join(shlex.quote(str(r)) for _, r in files)} 2>/dev/null; true)",
            f"preparing {self.remote}")
        cached = {}
        for line in listing.splitlines():
            digest, _, name = line.strip().partition(" ")
            cached[name.strip().lstrip("*")] = digest
        pushed = 0
        for local, remote in files:
            if cached.get(str(remote)) == sha256_file(local):
                continue
            log(f"{self.spec.name}: pushing {local.name} to {remote}")
            proc = self.adb("push", str(local), str(remote), timeout=self.settings.timeout)
            if proc.returncode != 0:
                problem = self.explain(proc.stdout + proc.stderr)
                raise DeviceError(self.spec.name, f"pushing {local.name} failed: {problem}; "
                                                  "check free space on the phone")
            pushed += local.stat().st_size
        return pushed

    # -- benchmarking -------------------------------------------------------------------------

    def bench(self, job: dict, on_result: OnResult | None = None,
              log: Log = ignore_log) -> BenchRun:
        """Run every .tflite artifact of the job at each thread count with benchmark_model."""
        if job.get("task") == "verify":
            raise DeviceError(self.spec.name, ANDROID_PARITY)
        started = time.perf_counter()
        run = BenchRun(device=self.spec.name)
        own = Path(self.spec.benchmark_model).expanduser() if self.spec.benchmark_model else None
        if own is not None and not own.is_file():
            raise DeviceError(self.spec.name, f"benchmark_model not found at {own}; {BUILD_HINT}")
        if "litert" not in job["runtimes"]:
            raise DeviceError(self.spec.name, "an adb device runs .tflite artifacts with benchmark_model; "
                                              "include the litert runtime in the bench")
        artifacts = []
        for artifact in load_job_artifacts(job):
            if artifact.format != "tflite":
                log(f"{self.spec.name}: skipping {artifact.path.name} (benchmark_model runs .tflite only)")
                continue
            artifacts.append(artifact)
        if not artifacts:
            raise DeviceError(self.spec.name, "the bench has no .tflite artifact; export with TFLite "
                                              "outputs and pass them to the bench")
        facts = self.probe()
        device = self.device_info(facts)
        binary, binary_sha, binary_version = self.benchmark_binary(facts["arch"], log)
        remote_binary = self.remote / "benchmark_model"
        files = [(binary, remote_binary)]
        remote_of = {}
        for artifact in artifacts:
            remote_of[artifact.path] = self.remote / artifact_dir_key(artifact.path) / artifact.path.name
            files.append((artifact.path, remote_of[artifact.path]))
        run.bytes_copied = self.sync(files, log)
        self.shell(f"chmod 755 {shlex.quote(str(remote_binary))}", "making benchmark_model executable")
        commit = job.get("git_commit")  # set once, by build_job
        runtime = {"name": "benchmark_model", "version": binary_version, "graph_optimization": None,
                   "sha256": binary_sha}
        not_applied: list[str] = []
        for threads in job["threads"]:
            for artifact in artifacts:
                for accelerator in self.settings.accelerators:
                    graph = remote_of[artifact.path]
                    text = self._run_benchmark(remote_binary, graph, threads, job, log,
                                               measured=len(run.results), accelerator=accelerator)
                    delegation = parse_gpu_delegation(text) if accelerator == "gpu" else None
                    if delegation is not None and delegation.status == "none":
                        not_applied.append(f"{artifact.path.name} at {threads} thread(s): {delegation.evidence}"
                                           + gpu_check(artifact))
                        log(f"{self.spec.name}: {artifact.path.name} gpu: not measured, the GPU delegate "
                            f"was not applied ({delegation.evidence})")
                        continue
                    if delegation is not None and delegation.status == "partial":
                        log(f"{self.spec.name}: {artifact.path.name} gpu: the delegate took part of the "
                            f"graph ({delegation.evidence}); the rest runs on the CPU{gpu_check(artifact)}")
                    result = self._result(artifact, self._parse(text, artifact), threads, device, commit,
                                          runtime, accelerator, delegation)
                    if job.get("profile"):  # a run of its own: op profiling slows the timed one
                        profiled = self._run_benchmark(remote_binary, graph, threads, job, log,
                                                       measured=len(run.results), profile=True,
                                                       accelerator=accelerator)
                        result["profile"] = parse_op_profile(profiled, job["runs"])
                        validate_result(result)
                    run.results.append(result)
                    if on_result is not None:
                        on_result(result)
        run.seconds = time.perf_counter() - started
        if not_applied:
            raise DeviceError(self.spec.name, f"the GPU delegate was not applied in {len(not_applied)} run(s), "
                                              f"so they have no gpu line ({'; '.join(not_applied)}); the "
                                              f"{len(run.results)} line(s) measured are kept; `payattn "
                                              "inspect` shows each file's GPU compatibility")
        return run

    def benchmark_binary(self, abi: str, log: Log) -> tuple[Path, str, str]:
        """The binary to push, its sha256 and version: the user's, or LiteRT's prebuilt, fetched
        once and checked against the sha256 the registry recorded when it was first used."""
        if self.spec.benchmark_model:
            path = Path(self.spec.benchmark_model).expanduser()
            return path, sha256_file(path), "unknown"
        try:
            prebuilt = ensure_benchmark_model(abi, self.settings.fetch, lambda line: log(f"{self.spec.name}: {line}"))
        except PayattnError as exc:
            raise DeviceError(self.spec.name, str(exc)) from None
        recorded, name = self.spec.benchmark_model_sha256, self.spec.name
        if recorded is not None and self.spec.benchmark_model_version == prebuilt.version \
                and recorded != prebuilt.sha256:
            raise DeviceError(name, f"the cached benchmark_model {prebuilt.path} has sha256 {prebuilt.sha256[:16]}…, "
                                    f"not the {recorded[:16]}… recorded when it was first used; refused: delete "
                                    f"it, then `payattn devices remove {name}` and add the phone again to trust "
                                    "a new one")
        if recorded is None or self.spec.benchmark_model_version != prebuilt.version:
            record_benchmark_model(name, prebuilt.version, prebuilt.sha256, self.settings.devices_file)
        return prebuilt.path, prebuilt.sha256, f"litert-{prebuilt.version}"

    def _parse(self, text: str, artifact) -> Any:
        try:
            return parse_benchmark_model(text)
        except BenchmarkModelParseError as exc:
            raise DeviceError(self.spec.name, f"could not read benchmark_model's output for "
                                              f"{artifact.path.name} ({exc}); last line: "
                                              f"{last_error_line(text.splitlines())}") from None

    def benchmark_argv(self, binary: PurePosixPath, graph: PurePosixPath, threads: int, job: dict,
                       profile: bool = False, accelerator: str = "cpu") -> str:
        """The shell command for one run, in the harness's settings (`profile`: with op profiling;
        `accelerator` gpu: the GPU delegate, fp32 unless precision loss was asked for)."""
        parts = []
        if self.spec.cpu_mask:
            parts += ["taskset", self.spec.cpu_mask]
        parts += [str(binary), f"--graph={graph}", f"--num_threads={threads}",
                  f"--warmup_runs={job['warmup_runs']}", f"--warmup_min_secs={job['warmup_seconds']}",
                  f"--num_runs={job['runs']}", f"--min_secs={job['min_seconds']}"]
        if self.settings.use_xnnpack is not None:
            parts.append(f"--use_xnnpack={'true' if self.settings.use_xnnpack else 'false'}")
        if accelerator == "gpu":
            parts += ["--use_gpu=true",
                      f"--gpu_precision_loss_allowed={'true' if self.settings.gpu_precision_loss else 'false'}"]
        if profile:
            parts.append("--enable_op_profiling=true")
        return " ".join(shlex.quote(p) for p in parts)

    def _run_benchmark(self, binary: PurePosixPath, graph: PurePosixPath, threads: int, job: dict,
                       log: Log, measured: int, profile: bool = False, accelerator: str = "cpu") -> str:
        lines: list[str] = []

        def keep(line: str) -> None:
            lines.append(line)
            if "count=" in line or "Inference timings" in line:
                log(f"{self.spec.name}: {graph.name} {threads} thread(s): {line.strip()}")

        command = self.benchmark_argv(binary, graph, threads, job, profile, accelerator)
        outcome = stream_process([self.settings.adb, "-s", self.spec.serial, "shell", command],
                                 on_stdout=keep, on_stderr=keep, timeout=self.settings.timeout)
        kept = f" ({measured} result(s) measured before it are kept)" if measured else ""
        text = "\n".join(lines)
        if outcome.timed_out:
            raise DeviceError(self.spec.name, f"benchmark_model on {graph.name} did not finish within "
                                              f"{self.settings.timeout:.0f} s and was stopped{kept}; "
                                              "raise the timeout")
        if outcome.returncode != 0 and accelerator == "gpu" and any(m in text for m in GPU_NOT_APPLIED):
            return text  # the caller says the delegate was not applied, in the tool's words
        if outcome.returncode != 0:
            if "inaccessible or not found" in text or "No such file" in text or outcome.returncode == 127:
                raise DeviceError(self.spec.name, f"benchmark_model could not be started on the phone "
                                                  f"({last_error_line(lines)}); {BUILD_HINT}")
            if "Exec format error" in text or "not executable" in text:
                raise DeviceError(self.spec.name, f"{self.spec.benchmark_model} is not built for this phone's CPU "
                                                  f"({last_error_line(lines)}); {BUILD_HINT}")
            if any(s in text for s in ("error: device", "error: closed", "no devices", "protocol fault")):
                raise DeviceError(self.spec.name, self.explain(text, mid_run=True) + kept)
            raise DeviceError(self.spec.name, f"benchmark_model failed on {graph.name}: "
                                              f"{last_error_line(lines)}{kept}")
        return text

    def _result(self, artifact, parsed, threads: int, device: dict, commit: str | None, runtime: dict,
                accelerator: str, delegation) -> dict[str, Any]:
        first_ms = parsed.first_inference_ms
        if parsed.init_ms is None or first_ms is None:
            raise DeviceError(self.spec.name, f"benchmark_model printed no 'Inference timings in us' line for "
                                              f"{artifact.path.name}; use a newer benchmark_model ({BUILD_HINT})")
        result = {
            **artifact_fields(artifact, commit),
            "runtime": {**runtime, "version": parsed.version if runtime["version"] == "unknown" and parsed.version
                        else runtime["version"]},
            "device": device,
            "accelerator": accelerator,
            **({"delegation": delegation.to_json()} if delegation is not None else {}),
            "threads": threads,
            "warmup_runs": parsed.warmup.count if parsed.warmup is not None else 0,
            "runs": parsed.inference.count,
            "init_ms": round(parsed.init_ms, 6),
            "first_inference_ms": round(first_ms, 6),
            "latency_ms": parsed.latency_ms(),
            "peak_memory_bytes": parsed.peak_memory_bytes,
            "harness_overhead_ms": None,
        }
        try:
            validate_result(result)
        except RuntimeJobError as exc:
            raise DeviceError(self.spec.name, f"the result for {artifact.path.name} does not fit the "
                                              f"result schema: {exc}") from None
        return result
