"""What every device kind shares: the error type, the outcome of a bench, and a process runner.

A device bench is a child process (the harness locally, `ssh`, or `adb`) whose stdout carries
result lines and whose stderr carries progress messages; results are handed on the moment they arrive,
so a device that drops mid-run leaves every line it already measured in the results file.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from payattn.errors import PayattnError
from payattn.runtime.artifacts import Artifact, load_artifact
from payattn.runtime.lifetime import die_with_parent, quiet_fork

Log = Callable[[str], None]
OnResult = Callable[[dict], None]

# How long one device may take for a whole job before it is declared hung.
DEFAULT_TIMEOUT_S = 1800.0


class DeviceError(PayattnError):
    """A device failed; the message names the device, what failed and how to fix it."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"device {device!r}: {message}")
        self.device = device


@dataclass
class BenchRun:
    """What a bench on one device produced: result lines, and bytes copied to the device."""

    device: str
    results: list[dict] = field(default_factory=list)
    bytes_copied: int = 0
    seconds: float = 0.0


@dataclass
class ProcessOutcome:
    returncode: int
    stdout_lines: list[str]
    stderr_lines: list[str]
    timed_out: bool


def ignore_log(_message: str) -> None:
    """The default log sink."""


# The ssh, scp and adb processes running now, on any thread: a SIGTERM or Ctrl-C reaches the
# main thread only, so it stops these (stop_children) and the device threads' waits end too.
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()


def _started(proc: subprocess.Popen) -> None:
    with _live_lock:
        _live.add(proc)
    if _stopping.is_set():  # stop_children ran between the check and the start
        proc.kill()


def _ended(proc: subprocess.Popen) -> None:
    with _live_lock:
        _live.discard(proc)


def stop_children() -> None:
    """Kill every ssh/scp/adb child of this process and refuse new ones (see reset_children)."""
    _stopping.set()
    with _live_lock:
        for proc in list(_live):
            proc.kill()


def reset_children() -> None:
    _stopping.clear()


def stopping() -> bool:
    """Whether stop_children ran: a device failing now failed because the run was stopped."""
    return _stopping.is_set()


def run_child(argv: Sequence[str], *, timeout: float, input: bytes | None = None,
              capture_output: bool = False, **popen: Any) -> subprocess.CompletedProcess:
    """subprocess.run, for a process stop_children can end; after stop_children it refuses to
    start (KeyboardInterrupt, as the interrupted main thread sees it)."""
    if _stopping.is_set():
        raise KeyboardInterrupt
    if capture_output:
        popen.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if input is not None:
        popen["stdin"] = subprocess.PIPE
    with subprocess.Popen(list(argv), **popen) as proc:
        _started(proc)
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            _ended(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def stream_process(
    argv: Sequence[str],
    *,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    stdin_data: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    env: dict[str, str] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> ProcessOutcome:
    """Run argv, hand each stdout/stderr line over as it arrives, and kill it after `timeout` s.

    An exception raised by a handler (a malformed result line, a full disk while appending)
    is re-raised here once the process has ended, so a reader thread never swallows it.
    `on_stop` runs after a timeout or Ctrl-C kills the process: killing a local `ssh` does not
    stop the command it started on the device, so the SSH device stops that itself.
    """
    if _stopping.is_set():
        raise KeyboardInterrupt
    with quiet_fork():
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent,  # a killed payattn takes its harness, ssh or adb with it
        )
    _started(proc)
    out: list[str] = []
    err: list[str] = []
    failures: list[BaseException] = []

    def pump(stream, sink: list[str], callback: Callable[[str], None]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            sink.append(line)
            if not failures:
                try:
                    callback(line)
                except BaseException as exc:  # re-raised in the calling thread below
                    failures.append(exc)
        stream.close()

    threads = [
        threading.Thread(target=pump, args=(proc.stdout, out, on_stdout), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err, on_stderr), daemon=True),
    ]
    for thread in threads:
        thread.start()
    if stdin_data is not None:
        try:
            proc.stdin.write(stdin_data)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    timed_out = interrupted = False
    try:
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
        timed_out, interrupted = isinstance(exc, subprocess.TimeoutExpired), isinstance(exc, KeyboardInterrupt)
        proc.kill()
        proc.wait()
        if on_stop is not None:
            on_stop()
    _ended(proc)
    deadline = time.monotonic() + 5.0
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if interrupted:
        raise KeyboardInterrupt
    if failures:
        raise failures[0]
    return ProcessOutcome(proc.returncode, out, err, timed_out)


def result_collector(
    device: str, run: BenchRun, on_result: OnResult | None
) -> Callable[[str], None]:
    """A stdout handler that turns each JSON line into a result and passes it on at once."""

    def handle(line: str) -> None:
        text = line.strip()
        if not text.startswith("{"):
            return
        try:
            result = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeviceError(device, f"the harness printed a malformed result line ({exc})") from None
        run.results.append(result)
        if on_result is not None:
            on_result(result)

    return handle


def last_error_line(lines: Sequence[str]) -> str:
    """The last non-empty line (the harness's one-line error), without its "error: " prefix."""
    for line in reversed(lines):
        if line.strip():
            text = line.strip()
            return text[len("error:"):].strip() if text.lower().startswith("error:") else text
    return "no error message"


def artifact_dir_key(artifact: Path) -> str:
    """A stable, readable folder name for an artifact's directory on a device."""
    folder = artifact.resolve().parent
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in folder.name) or "artifacts"
    return f"{safe}-{digest}"


def load_job_artifacts(job: dict) -> list[Artifact]:
    """Check every artifact of a job against its manifest here, before any device is touched:
    a missing or changed file is the user's to fix, not a device failure (RuntimeJobError)."""
    return [load_artifact(entry["path"], entry.get("manifest")) for entry in job["artifacts"]]
