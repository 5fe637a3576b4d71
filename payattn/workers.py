"""Jobs run side by side in worker processes that report progress through the parent's hooks.

Training and converting are single-threaded Python for the most part, so on a machine with
several cores the demo runs one mechanism per worker. Workers are spawned (never forked: the
parent may hold TensorFlow's, JAX's or torch's threads), and each sends its progress as small
tuples through one queue the parent drains while it waits, so the progress bar stays in the
parent and shows every job at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context
from typing import Any

from payattn.hooks import Hooks

_events: Any = None  # the worker's end of the parent's queue, set by _init


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_side_by_side(jobs: list[tuple[Callable[..., Any], tuple[Any, ...]]], workers: int,
                     hooks: Hooks) -> Iterator[Any]:
    """Run each (function, args) job as `function(*args, hooks=...)` in a pool of `workers`
    spawned processes, replaying their progress on `hooks`; yield each job's result in the order
    the jobs were given. A job's exception is raised here once the jobs before it have been
    yielded. One worker runs the jobs here, in this process."""
    if workers <= 1:
        yield from (function(*args, hooks=hooks) for function, args in jobs)
        return
    context = get_context("spawn")
    events = context.SimpleQueue()  # a put is written at once: no event trails its job's result
    opened: dict[tuple[str, str], Callable[..., None]] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init,
                             initargs=(events,)) as pool:
        futures = [pool.submit(_with_worker_hooks, function, args) for function, args in jobs]
        try:
            for future in futures:
                while not future.done():
                    wait([future], timeout=0.1)
                    _replay(events, hooks, opened)
                _replay(events, hooks, opened)
                yield future.result()
        except BaseException:  # Ctrl-C, SIGTERM, a failed job: the running jobs end too
            pool.shutdown(wait=False, cancel_futures=True)
            children = active_children()
            for child in children:
                child.terminate()
            for child in children:
                child.join()
            raise


def _replay(events: Any, hooks: Hooks, opened: dict[tuple[str, str], Callable[..., None]]) -> None:
    """Call `hooks` for every event the workers have sent so far; `opened` keeps the step
    callback each training or export got from its first event."""
    while not events.empty():
        kind, label, *rest = events.get()
        if kind == "log":
            hooks.log(label)
        elif kind == "done":
            hooks.done(label, *rest)
        else:
            if (kind, label) not in opened:
                opened[kind, label] = getattr(hooks, kind)(label)
            opened[kind, label](*rest)


def _with_worker_hooks(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """In a worker: the job, with hooks that send each call to the parent."""
    put = _events.put
    hooks = Hooks(log=lambda message: put(("log", message)),
                  training=lambda label: lambda *step: put(("training", label, *step)),
                  exporting=lambda label: lambda step: put(("exporting", label, step)),
                  done=lambda label, status: put(("done", label, status)))
    return function(*args, hooks=hooks)


def _init(events: Any) -> None:
    global _events
    os.environ["OMP_NUM_THREADS"] = "1"
    _events = events
