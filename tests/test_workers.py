"""Jobs side by side in spawned workers: results in order, progress replayed in the parent,
a failing job's error raised in the parent."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from payattn.errors import PayattnError
from payattn.hooks import Hooks
from payattn.workers import run_side_by_side


def _job(name: str, steps: int, hooks: Hooks) -> tuple[str, int]:
    step = hooks.training(f"train {name}")
    for i in range(1, steps + 1):
        step(i, steps, 1.0 / i)
    hooks.done(f"train {name}", "ok")
    hooks.log(f"{name} finished")
    return name, os.getpid()


def _failing(name: str, hooks: Hooks) -> None:
    raise PayattnError(f"{name} cannot be trained")


def _recording_hooks(events: list[tuple]) -> Hooks:
    return Hooks(log=lambda message: events.append(("log", message)),
                 training=lambda label: lambda *step: events.append((label, *step)),
                 done=lambda label, status: events.append(("done", label, status)))


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_order_and_progress_replayed(workers: int) -> None:
    events: list[tuple] = []
    jobs = [(_job, (name, 3)) for name in ("a", "b", "c")]
    results = list(run_side_by_side(jobs, workers, _recording_hooks(events)))
    assert [name for name, _ in results] == ["a", "b", "c"]
    pids = {pid for _, pid in results}
    assert (os.getpid() in pids) == (workers == 1)
    for name in "abc":
        assert [e for e in events if e[0] == f"train {name}"] == [
            (f"train {name}", i, 3, 1.0 / i) for i in (1, 2, 3)]
        assert ("done", f"train {name}", "ok") in events
        assert ("log", f"{name} finished") in events


def test_a_failing_job_raises_its_error_after_the_jobs_before_it() -> None:
    jobs = [(_job, ("a", 1)), (_failing, ("b",)), (_job, ("c", 1))]
    seen = []
    with pytest.raises(PayattnError, match="b cannot be trained"):
        for name, _ in run_side_by_side(jobs, 2, Hooks()):
            seen.append(name)
    assert seen == ["a"]


def _slow(seconds: float, hooks: Hooks) -> None:
    hooks.log("started")
    time.sleep(seconds)


def test_an_interrupt_in_the_parent_ends_the_running_jobs() -> None:
    def interrupt(message: str) -> None:
        raise KeyboardInterrupt  # as Ctrl-C or SIGTERM arrives in the parent

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(run_side_by_side([(_slow, (60,)), (_slow, (60,))], 2, Hooks(log=interrupt)))
    assert time.monotonic() - started < 30 and not multiprocessing.active_children()
