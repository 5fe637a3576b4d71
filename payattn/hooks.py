"""Where a long pipeline step reports its progress, so the steps never draw anything themselves:
the CLI passes hooks that draw a progress bar, a script passes none, a worker process passes
hooks that send each call to its parent (payattn.workers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

StepFn = Callable[[int, int, float], None]


def _quiet(*_: Any) -> None:
    return None


@dataclass
class Hooks:
    """Where the pipeline reports: `log` messages, each `on_result` line, and per-job progress
    (`training(label)` returns the step callback of one training, `exporting(label)` the step
    callback of one export, `done(label, status)` closes either)."""

    log: Callable[[str], None] = _quiet
    on_result: Callable[[dict[str, Any]], None] = _quiet
    training: Callable[[str], StepFn] = lambda label: _quiet
    exporting: Callable[[str], Callable[[str], None]] = lambda label: _quiet
    done: Callable[[str, str], None] = _quiet
