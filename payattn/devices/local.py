"""This machine as a device: the harness in a child Python, exactly as a device runs it.

Running `python -m payattn.runtime JOB.json` in a child process rather than in-process keeps
the local path the same as the SSH one (same job file, same result stream), and a runtime that
crashes takes down only the child.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import payattn
from payattn.devices.base import (
    DEFAULT_TIMEOUT_S,
    BenchRun,
    DeviceError,
    OnResult,
    Log,
    ignore_log,
    last_error_line,
    result_collector,
    stream_process,
)
from payattn.devices.registry import LOCAL_SPEC, DeviceSpec
from payattn.files import clean_temp_leftovers
from payattn.runtime.env import probe

JOB_DIR_PREFIX = "payattn-job-"  # + PID-: a killed run's job dir is recognised and removed later


class LocalDevice:
    """This machine, benchmarked with the given Python (this one by default)."""

    kind = "local"

    def __init__(self, spec: DeviceSpec = LOCAL_SPEC, python: str = sys.executable,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.spec = spec
        self.python = python
        self.timeout = timeout

    def __enter__(self) -> LocalDevice:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def probe(self) -> dict:
        return probe()

    def bench(self, job: dict, on_result: OnResult | None = None,
              log: Log = ignore_log) -> BenchRun:
        """Run the job here; each result line goes to `on_result` as it arrives."""
        started = time.perf_counter()
        run = BenchRun(device=self.spec.name)
        local_job = copy.deepcopy(job)
        local_job["device"] = {"name": self.spec.name, "kind": "local"}
        env = dict(os.environ)
        package_root = str(Path(payattn.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        clean_temp_leftovers(JOB_DIR_PREFIX)
        # The harness stops itself at the job's timeout; this is the backstop if it cannot.
        timeout = float(job.get("timeout_seconds", self.timeout)) + 60
        with tempfile.TemporaryDirectory(prefix=f"{JOB_DIR_PREFIX}{os.getpid()}-") as tmp:
            job_file = Path(tmp) / "job.json"
            job_file.write_text(json.dumps(local_job))
            outcome = stream_process(
                [self.python, "-m", "payattn.runtime", str(job_file)],
                on_stdout=result_collector(self.spec.name, run, on_result),
                on_stderr=lambda line: log(f"{self.spec.name}: {line}") if line.strip() else None,
                timeout=timeout,
                env=env,
            )
        run.seconds = time.perf_counter() - started
        kept = f" ({len(run.results)} result(s) measured before it are kept)" if run.results else ""
        if outcome.timed_out:
            raise DeviceError(self.spec.name, f"the job did not finish within {timeout:.0f} s and was "
                                              f"stopped{kept}; raise the timeout or bench fewer artifacts")
        if outcome.returncode != 0:
            raise DeviceError(self.spec.name, f"the harness failed: {last_error_line(outcome.stderr_lines)}{kept}")
        return run
