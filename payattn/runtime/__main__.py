"""`python -m payattn.runtime JOB.json`: the device-side entry point, for a benchmark job or,
with `"task": "verify"`, a parity job (payattn.runtime.parity).

Result lines (JSON, one per line) go to stdout as each is ready; progress goes to stderr.
On failure the exit code is non-zero and stderr ends with one line starting "error:". The
process ends when its parent does and once the job's timeout_seconds have passed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from payattn.runtime.errors import RuntimeJobError
from payattn.runtime.job import run_job
from payattn.runtime.lifetime import die_with_parent, start_watchdog
from payattn.runtime.settings import BenchSettings
from payattn.runtime.parity import run_verify_job

USAGE = "usage: python -m payattn.runtime JOB.json"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 2
    die_with_parent()
    try:
        job = _read_job(Path(args[0]))
        limit = BenchSettings.from_job(job).timeout_seconds
        start_watchdog(limit, f"the job ran past its bound of {limit:.0f} s (timeout_seconds) and "
                              f"was stopped; bench fewer artifacts or raise --timeout")
        run = run_verify_job if job.get("task") == "verify" else run_job
        run(job, on_result=_emit, log=_progress)
    except RuntimeJobError as exc:
        _progress(f"error: {_one_line(str(exc))}")
        return 2
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the host reports it
        return 130
    except Exception as exc:  # anything else still ends in one line, not a traceback
        _progress(f"error: {type(exc).__name__}: {_one_line(str(exc))}")
        return 1
    return 0


def _read_job(path: Path) -> dict:
    try:
        job = json.loads(path.read_text())
    except OSError as exc:
        raise RuntimeJobError(f"cannot read job file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuntimeJobError(f"job file {path} is not valid JSON: {exc}") from None
    if not isinstance(job, dict):
        raise RuntimeJobError(f"job file {path} must hold a JSON object")
    return job


def _emit(result: dict) -> None:
    print(json.dumps(result, allow_nan=False, separators=(",", ":")), flush=True)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
