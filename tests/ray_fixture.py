"""A real Ray head on 127.0.0.1 for the sweep tests, stopped when the test module ends.

`ray_head` runs `ray start --head --block` (2 CPUs, no dashboard, no usage stats) in a session
of its own with a short temp dir of its own, so it never meets another Ray on this machine.
Teardown sends SIGTERM to that `ray start` (which stops the processes it started), then
SIGKILL to whatever of its session is left, and removes the temp dir. A missing `ray` is a
test failure that says how to install it, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sshd_fixture import free_port

INSTALL_HINT = "ray not found: install the extra with `pip install -e '.[ray]'` (make test does)"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the head's own session: only processes it started
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_head():
    """The address (127.0.0.1:PORT) of a running Ray head with 2 CPUs."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.is_file():
        pytest.fail(INSTALL_HINT, pytrace=False)
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="payattn-ray-", dir="/tmp"))  # unix socket paths stay short
    log = temp_dir / "head.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
             "--temp-dir", str(temp_dir)],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed: {log.read_text(errors='replace')[-3000:]}", pytrace=False)
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
