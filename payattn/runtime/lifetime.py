"""A process that must not outlive its parent or its time: the harness and the converter.

When payattn is killed (SIGKILL from outside, a closed SSH session), a child it started must
stop too, or it runs on as an orphan holding CPU and gigabytes of memory. On Linux the kernel
does it (PR_SET_PDEATHSIG); everywhere, a watchdog thread polls the parent's id and also ends
the process once its time bound has passed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere nothing).
    Safe as a subprocess `preexec_fn`: it only calls prctl."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def quiet_fork() -> Iterator[None]:
    """Start a child process without JAX's fork warning. JAX (which litert-torch imports) warns
    on every fork that a multithreaded process may deadlock; that holds for a child that goes
    on running Python, not for one that only calls `die_with_parent` and execs, as every child
    payattn starts does."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


def start_watchdog(limit_seconds: float, on_expiry: str, poll_seconds: float = 0.5) -> None:
    """End this process (exit code 3, `on_expiry` on stderr) when its parent goes away or
    `limit_seconds` have passed: the harness's own bound, whatever the host does."""
    parent, deadline = os.getppid(), time.monotonic() + limit_seconds

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(3)
            if time.monotonic() > deadline:
                print(f"error: {on_expiry}", file=sys.stderr, flush=True)
                os._exit(3)

    threading.Thread(target=watch, name="payattn-watchdog", daemon=True).start()
