"""A real OpenSSH server on a loopback port, for the SSH device tests.

`sshd_server` starts `/usr/sbin/sshd -D -e -f CONFIG` with a throw-away host key and user key
made by ssh-keygen in a temp dir (AuthorizedKeysFile, PidFile and host key all there, UsePAM no,
StrictModes no), and writes a client ssh_config whose known_hosts already holds the host key,
so the tests pass `SshSettings(config_file=...)` and never touch the user's ~/.ssh. A missing
sshd is a test failure that says how to install it, never a skip.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

INSTALL_HINT = "sshd not found: run scripts/ci_system_deps.sh (installs openssh-server) and re-run the tests"


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    identity: Path  # a key the server accepts
    other_identity: Path  # a key it does not
    ssh_config: Path  # client config: known_hosts with the host key, nothing from ~/.ssh
    log: Path
    pid: int  # the listening sshd; each connection is a child of it

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def find_sshd() -> str:
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd")):
        if candidate and os.access(candidate, os.X_OK):
            return str(Path(candidate).resolve())  # sshd re-executes itself: absolute path
    pytest.fail(INSTALL_HINT, pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "payattn-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def wait_for_banner(port: int, proc: subprocess.Popen, log: Path, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"sshd did not answer on port {port}: {log.read_text(errors='replace')[-2000:]}", pytrace=False)


@contextlib.contextmanager
def running_sshd(tmp: Path, sftp: bool = True) -> Iterator[SshServer]:
    """An sshd on 127.0.0.1 with its keys in `tmp`, stopped on exit; `sftp=False` leaves out
    the SFTP subsystem (as some minimal boards do), which scp needs."""
    sshd = find_sshd()
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.fail("ssh/ssh-keygen not found: " + INSTALL_HINT, pytrace=False)
    host_key = keygen(tmp / "host_key")
    user_key = keygen(tmp / "user_key")
    other_key = keygen(tmp / "other_key")
    (tmp / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        *(["Subsystem sftp internal-sftp"] if sftp else []),
        "LogLevel VERBOSE",
        "",
    ]))
    # Debian's sshd refuses to start without its privilege separation dir.
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = tmp / "sshd.log"
    with open(log, "wb") as stream:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=stream, stderr=stream,
                                stdin=subprocess.DEVNULL)
    try:
        wait_for_banner(port, proc, log)
        public_host_key = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
        (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {public_host_key}\n")
        ssh_config = tmp / "ssh_config"
        ssh_config.write_text("\n".join([
            "Host *",
            f"  UserKnownHostsFile {tmp / 'known_hosts'}",
            "  StrictHostKeyChecking yes",
            "  LogLevel ERROR",
            "",
        ]))
        yield SshServer(host="127.0.0.1", port=port, user=getpass.getuser(), identity=user_key,
                        other_identity=other_key, ssh_config=ssh_config, log=log, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory):
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
