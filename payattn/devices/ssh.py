"""Benchmark on a Linux board (a Raspberry Pi) over SSH with the system `ssh` and `scp`.

One run: open one master connection (ControlMaster, its socket in a private temp dir), ask the
device in one command for the sha256 of what it has cached under `~/.cache/payattn/`, copy only
the files that differ (artifacts with their manifest.json, and the runtime package:
`payattn/__init__.py` + `payattn/runtime/`'s modules and schemas), then run the harness there as
`python3 -m payattn.runtime job.json` with PYTHONPATH at the cache and stream its result
lines back. Host keys, users and aliases follow the user's own ssh configuration; a caller
(the tests) can point at its own with `SshSettings(config_file=..., options=...)`.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import payattn
from payattn.errors import PayattnError
from payattn.devices.base import (
    DEFAULT_TIMEOUT_S,
    BenchRun,
    DeviceError,
    OnResult,
    ProcessOutcome,
    Log,
    artifact_dir_key,
    ignore_log,
    last_error_line,
    load_job_artifacts,
    result_collector,
    run_child,
    stream_process,
)
from payattn.devices.registry import DeviceSpec
from payattn.files import clean_temp_leftovers
from payattn.runtime import env
from payattn.runtime.artifacts import load_manifest, sha256_file
from payattn.runtime.parity import reference_paths

CONTROL_DIR_PREFIX = "payattn-ssh-"  # + PID-: a killed run's control dir is recognised later
DEFAULT_REMOTE_DIR = ".cache/payattn"  # relative to the login directory, for ssh and scp alike
DEFAULT_PYTHON = "python3"

# Run by the device's Python: sha256 of each cached file that exists, as one JSON object.
REMOTE_HASHER = (
    "import hashlib,json,sys\n"
    "out={}\n"
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        with open(p,'rb') as f: out[p]=hashlib.sha256(f.read()).hexdigest()\n"
    "    except OSError: pass\n"
    "print(json.dumps(out))\n"
)


@dataclass(frozen=True)
class SshSettings:
    """How to reach SSH devices. The defaults are the production ones: the user's own ssh
    config and known_hosts; `config_file` (ssh -F) and `options` (-o K=V) let a caller bring
    its own, `remote_dir` moves the cache on the device."""

    config_file: Path | None = None
    options: tuple[str, ...] = ()
    remote_dir: str = DEFAULT_REMOTE_DIR
    connect_timeout: int = 10
    timeout: float = DEFAULT_TIMEOUT_S


def stop_control_master(control_dir: Path) -> None:
    """Stop the SSH control master(s) listening in a killed run's control dir."""
    for socket in control_dir.glob("cm-*"):
        subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "payattn-leftover"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)


def shell_path(path: str) -> str:
    """Quote a path for the device's shell, keeping a leading ~/ meaning the home directory."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def runtime_package_files() -> list[tuple[Path, str]]:
    """The device-side code as (local file, path under the cache): payattn/__init__.py,
    payattn/runtime/*.py, which import numpy and the runtimes only, and the format schemas."""
    package = Path(payattn.__file__).resolve().parent
    files = [(package / "__init__.py", "pkg/payattn/__init__.py")]
    runtime = package / "runtime"
    if not (runtime / "__main__.py").is_file():
        raise PayattnError(f"the runtime package {runtime} has no __main__.py; reinstall payattn")
    for path in sorted([*runtime.glob("*.py"), *runtime.glob("schemas/*.json")]):
        files.append((path, f"pkg/payattn/{path.relative_to(package).as_posix()}"))
    return files


def explain_ssh_failure(spec: DeviceSpec, stderr: str, mid_run: bool = False) -> str:
    """Turn ssh's stderr into what happened and what to do about it. `mid_run`: ssh failed
    while the harness ran, where exit 255 without a known cause means the connection went
    away (or the harness was killed: ssh reports that as 255 too)."""
    line = last_error_line([l for l in stderr.splitlines() if not l.startswith("Warning: Permanently added")])
    host, port = spec.host, spec.port or 22
    destination = f"{spec.user}@{host}" if spec.user else host
    if "Permission denied" in stderr:
        key = f"-i {spec.identity}.pub " if spec.identity else ""
        return (f"{destination} refused the SSH key ({line}); install your public key there with "
                f"`ssh-copy-id {key}-p {port} {destination}`, or re-add the device with --identity KEY")
    if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return host_key_advice(spec, destination, "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr)
    if "subsystem request failed" in stderr:
        return (f"the SSH server on {host}:{port} has no SFTP subsystem, which scp needs to copy "
                f"files; enable it on the device: add `Subsystem sftp internal-sftp` to "
                f"/etc/ssh/sshd_config, then `sudo systemctl restart ssh`")
    if "Could not resolve hostname" in stderr:
        return f"cannot resolve the host name {host!r} ({line}); check the spelling or use the IP address"
    if "Connection refused" in stderr:
        return (f"{host}:{port} refused the connection; check that the SSH server runs on the device "
                f"(`sudo systemctl enable --now ssh`) and that the port is right")
    dropped = ("closed by remote host", "Connection reset", "Broken pipe", "server not responding",
               "Connection closed", "client_loop")
    if mid_run or any(s in stderr for s in dropped):
        return (f"the connection to {host}:{port} dropped mid-run, or the harness there was killed "
                f"(last message: {line}); check the device's power, network and free memory, then run again")
    if any(s in stderr for s in ("timed out", "No route to host", "Network is unreachable")):
        return (f"{host}:{port} is unreachable ({line}); check that the device is on and on the "
                "network, and that the address and port are right")
    return f"ssh to {destination} failed: {line}"


def host_key_advice(spec: DeviceSpec, destination: str, changed: bool) -> str:
    """The exact command that checks and accepts the board's host key in the very file payattn
    reads: the device's own known-hosts file when it has one, else the user's."""
    port = spec.port or 22
    options = ""
    where = "your known_hosts"
    if spec.known_hosts:
        known = shlex.quote(str(Path(spec.known_hosts).expanduser()))
        options, where = f"-o UserKnownHostsFile={known} ", spec.known_hosts
    host = spec.host.strip("[]")
    key = f"[{host}]:{port}" if port != 22 else host
    remove = f"-f {shlex.quote(str(Path(spec.known_hosts).expanduser()))} " if spec.known_hosts else ""
    first = (f"the host key of {spec.host} has changed since it was accepted; if the device was "
             f"reinstalled, remove the old key with `ssh-keygen {remove}-R {shlex.quote(key)}`, then"
             if changed else f"the host key of {spec.host} is not in {where};")
    return f"{first} check and accept it with `ssh {options}-p {port} {destination}`"


class SshDevice:
    """A registered SSH device; use as a context manager so the master connection is closed."""

    kind = "ssh"

    def __init__(self, spec: DeviceSpec, settings: SshSettings = SshSettings()) -> None:
        if spec.kind != "ssh":
            raise DeviceError(spec.name, f"is a {spec.kind} device, not an ssh one")
        self.spec = spec
        self.settings = settings
        self.python = spec.python or DEFAULT_PYTHON
        self._control_dir: Path | None = None

    # -- connection ---------------------------------------------------------------------------

    @property
    def destination(self) -> str:
        host = self.spec.host.strip("[]")
        return f"{self.spec.user}@{host}" if self.spec.user else host

    def _options(self, mux: bool = True) -> list[str]:
        opts: list[str] = []
        if self.settings.config_file is not None:
            opts += ["-F", str(self.settings.config_file)]
        opts += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.settings.connect_timeout}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self._control_dir is not None and mux:
            opts += ["-o", f"ControlPath={self._control_dir / 'cm-%C'}"]
        if self.spec.identity:
            opts += ["-i", str(Path(self.spec.identity).expanduser()), "-o", "IdentitiesOnly=yes"]
        if self.spec.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={Path(self.spec.known_hosts).expanduser()}",
                     "-o", "StrictHostKeyChecking=yes"]
        for option in self.settings.options:
            opts += ["-o", option]
        return opts

    def _port(self, flag: str = "-p") -> list[str]:
        return [flag, str(self.spec.port)] if self.spec.port else []

    def ssh_argv(self, command: str) -> list[str]:
        """ssh running `command` through the master connection (or directly, if it is gone)."""
        return ["ssh", *self._options(), "-o", "ControlMaster=no", *self._port(), self.destination, command]

    def open(self) -> None:
        """Start the master connection that every later ssh/scp of this run goes through."""
        if self._control_dir is not None:
            return
        if shutil.which("ssh") is None or shutil.which("scp") is None:
            raise DeviceError(self.spec.name, "the ssh/scp clients are not installed here; "
                                              "install OpenSSH (`apt-get install openssh-client`)")
        # A short folder: the socket path must fit in a Unix socket address (about 104 bytes).
        short = Path("/tmp") if Path("/tmp").is_dir() else None
        clean_temp_leftovers(CONTROL_DIR_PREFIX, stop_control_master, short)
        self._control_dir = Path(tempfile.mkdtemp(prefix=f"{CONTROL_DIR_PREFIX}{os.getpid()}-", dir=short))
        log = self._control_dir / "master.log"
        argv = ["ssh", *self._options(), "-o", "ControlMaster=auto", "-o", "ControlPersist=300",
                "-f", "-N", *self._port(), self.destination]
        # The master lives on in the background: its stderr goes to a file, not a pipe, or
        # reading the pipe would wait for the master to exit.
        with open(log, "wb") as stream:
            try:
                code = run_child(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=stream, timeout=self.settings.connect_timeout + 20).returncode
            except subprocess.TimeoutExpired:
                code = None
            except BaseException:  # Ctrl-C or SIGTERM: run has killed ssh; leave no control dir
                self.close()
                raise
        if code != 0:
            stderr = log.read_text(errors="replace") if code is not None else "Connection timed out"
            self.close()
            raise DeviceError(self.spec.name, explain_ssh_failure(self.spec, stderr))

    def close(self) -> None:
        """Stop the master connection and remove its socket dir."""
        if self._control_dir is None:
            return
        subprocess.run(["ssh", *self._options(), *self._port(), "-O", "exit", self.destination],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._control_dir = None

    def __enter__(self) -> SshDevice:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, command: str, *, stdin: bytes | None = None,
            timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run one shell command on the device and capture its output (bytes)."""
        try:
            return run_child(self.ssh_argv(command), input=stdin, capture_output=True,
                                  stdin=None if stdin is not None else subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(self.spec.name, f"no answer within {timeout:.0f} s to `{command[:60]}`; "
                                              "check that the device is responsive") from None

    def _check_ssh(self, proc: subprocess.CompletedProcess, what: str) -> None:
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode == 255:
            raise DeviceError(self.spec.name, explain_ssh_failure(self.spec, stderr))
        if proc.returncode == 127:
            raise DeviceError(self.spec.name, self._python_missing())
        if proc.returncode != 0:
            raise DeviceError(self.spec.name, f"{what} failed: {last_error_line(stderr.splitlines())}")

    def _python_missing(self) -> str:
        return (f"{self.python!r} is not found on the device; install Python 3 there "
                f"(`sudo apt install python3 python3-pip`) or re-add the device with --python PATH")

    # -- files --------------------------------------------------------------------------------

    def sync(self, files: Iterable[tuple[Path, str]], log: Log = ignore_log) -> int:
        """Copy the files whose sha256 differs from the device's cached copy; return bytes copied."""
        files = list(files)
        remote_dir = self.settings.remote_dir
        wanted = {rel: sha256_file(local) for local, rel in files}
        dirs = sorted({str(Path(rel).parent) for _, rel in files})
        command = (f"mkdir -p {' '.join(shell_path(f'{remote_dir}/{d}') for d in dirs)} && "
                   f"cd {shell_path(remote_dir)} && {shell_path(self.python)} -c {shlex.quote(REMOTE_HASHER)} "
                   + " ".join(shlex.quote(rel) for rel in wanted))
        proc = self.run(command)
        self._check_ssh(proc, "listing the device's cache")
        try:
            cached = json.loads(proc.stdout.decode(errors="replace").strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise DeviceError(self.spec.name, f"unexpected answer from {self.python} while listing the "
                                              "cache; check that it is Python 3") from None
        stale: dict[str, list[Path]] = {}
        copied = 0
        for local, rel in files:
            if cached.get(rel) != wanted[rel]:
                stale.setdefault(str(Path(rel).parent), []).append(local)
                copied += local.stat().st_size
        for folder, locals_ in stale.items():
            log(f"{self.spec.name}: copying {len(locals_)} file(s) to {remote_dir}/{folder}")
            self._scp(locals_, f"{remote_dir}/{folder}/")
        return copied

    def _scp(self, sources: list[Path], remote_folder: str) -> None:
        host = self.spec.host  # scp wants an IPv6 address in its brackets, as stored
        target = f"{self.spec.user}@{host}" if self.spec.user else host
        argv = ["scp", "-q", *self._options(), "-o", "ControlMaster=no", *self._port("-P"),
                *[str(s) for s in sources], f"{target}:{remote_folder}"]
        try:
            proc = run_child(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.settings.timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(self.spec.name, f"copying to {remote_folder} took over "
                                              f"{self.settings.timeout:.0f} s; "
                                              "check the network to the device") from None
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            if proc.returncode == 255 or "Connection" in stderr:
                # Through the master connection a missing SFTP server reads as a dropped one.
                raise DeviceError(self.spec.name, self.sftp_problem() or explain_ssh_failure(self.spec, stderr))
            raise DeviceError(self.spec.name, f"scp to {remote_folder} failed: "
                                              f"{last_error_line(stderr.splitlines())}; "
                                              "check free space on the device (`df -h ~`)")

    # -- probing and benchmarking -------------------------------------------------------------

    def probe(self) -> dict:
        """The device's facts and runtime versions (payattn.runtime.env.probe, run from source)."""
        source = Path(env.__file__).read_bytes()
        proc = self.run(f"{shell_path(self.python)} -", stdin=source)
        self._check_ssh(proc, f"running {self.python} on the device")
        try:
            return json.loads(proc.stdout.decode(errors="replace").strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise DeviceError(self.spec.name, f"{self.python} on the device did not run the probe; "
                                              "check that it is Python 3.9 or newer") from None

    def sftp_problem(self) -> str | None:
        """What stops scp from copying (OpenSSH 9's scp speaks SFTP): the board's server must
        offer the sftp subsystem. None if it does. A connection of its own: through the master
        connection ssh does not say why a subsystem failed."""
        argv = ["ssh", *self._options(mux=False), "-o", "ControlPath=none", *self._port(), "-s",
                self.destination, "sftp"]
        try:
            proc = run_child(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.settings.connect_timeout + 20)
        except subprocess.TimeoutExpired:
            return f"no answer within {self.settings.connect_timeout + 20} s when asking for SFTP"
        stderr = proc.stderr.decode(errors="replace")
        if "subsystem request failed" in stderr:
            return explain_ssh_failure(self.spec, stderr)
        return None

    def bench(self, job: dict, on_result: OnResult | None = None,
              log: Log = ignore_log) -> BenchRun:
        """Copy what the job needs, run it on the device, and return its result lines.

        Each result line is passed to `on_result` as it arrives. Its artifact.path is the local
        path the job named (the copy on the device is an implementation detail). A connection
        opened here is closed here; one opened by `with SshDevice(...)` stays for the next job."""
        load_job_artifacts(job)
        opened_here = self._control_dir is None
        self.open()
        try:
            return self._bench(job, on_result, log)
        finally:
            if opened_here:
                self.close()

    def _bench(self, job: dict, on_result: OnResult | None, log: Log) -> BenchRun:
        started = time.perf_counter()
        run = BenchRun(device=self.spec.name)
        files = runtime_package_files()
        remote_job = copy.deepcopy(job)
        local_paths: dict[str, str] = {}
        for entry in remote_job["artifacts"]:
            artifact = Path(entry["path"])
            manifest = Path(entry.get("manifest") or artifact.parent / "manifest.json")
            folder = f"artifacts/{artifact_dir_key(artifact)}"
            files += [(artifact, f"{folder}/{artifact.name}"), (manifest, f"{folder}/manifest.json")]
            files += [(ref, f"{folder}/{ref.name}") for ref in reference_paths(manifest, load_manifest(manifest))]
            local_paths[f"{folder}/{artifact.name}"] = entry["path"]
            entry["path"], entry["manifest"] = f"{folder}/{artifact.name}", f"{folder}/manifest.json"
        remote_job["device"] = {"name": self.spec.name, "kind": "ssh"}
        run.bytes_copied = self.sync(list(dict.fromkeys(files)), log)
        log(f"{self.spec.name}: copied {run.bytes_copied} bytes; running the harness")

        def deliver(result: dict) -> None:
            artifact = result.get("artifact") or {}
            if artifact.get("path") in local_paths:
                artifact["path"] = local_paths[artifact["path"]]
            if on_result is not None:
                on_result(result)

        remote_dir = shell_path(self.settings.remote_dir)
        # `exec` keeps the shell's PID, written to harness.pid, so a timeout can stop the harness.
        command = (f"cd {remote_dir} && cat > job.json && echo $$ > harness.pid && "
                   f"PYTHONPATH=\"$PWD/pkg\" exec {shell_path(self.python)} -m payattn.runtime job.json")
        outcome = stream_process(
            self.ssh_argv(command),
            on_stdout=result_collector(self.spec.name, run, deliver),
            on_stderr=lambda line: log(f"{self.spec.name}: {line}") if line.strip() else None,
            stdin_data=json.dumps(remote_job).encode(),
            timeout=self.settings.timeout,
            on_stop=self._stop_harness,
        )
        run.seconds = time.perf_counter() - started
        self._raise_for(outcome, len(run.results))
        return run

    def _stop_harness(self) -> None:
        """Kill the harness on the device (the local ssh is already gone); best effort."""
        pid_file = shell_path(f"{self.settings.remote_dir}/harness.pid")
        try:
            subprocess.run(self.ssh_argv(f"kill $(cat {pid_file}) 2>/dev/null"), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=self.settings.connect_timeout + 10)
        except subprocess.TimeoutExpired:
            pass

    def _raise_for(self, outcome: ProcessOutcome, measured: int) -> None:
        kept = f" ({measured} result(s) measured before it are kept)" if measured else ""
        stderr = "\n".join(outcome.stderr_lines)
        if outcome.timed_out:
            raise DeviceError(self.spec.name, f"the job did not finish within {self.settings.timeout:.0f} s "
                                              f"and was stopped{kept}; raise the timeout or check the "
                                              "device's load")
        if outcome.returncode == 255:
            raise DeviceError(self.spec.name, explain_ssh_failure(self.spec, stderr, mid_run=True) + kept)
        if outcome.returncode == 127:
            raise DeviceError(self.spec.name, self._python_missing())
        if outcome.returncode != 0:
            message = last_error_line(outcome.stderr_lines)
            hint = ""
            if "No module named" in message:
                hint = (f"; install what is missing with `{self.python} -m pip install numpy onnxruntime "
                        f"ai-edge-litert` on the device (see `payattn devices check {self.spec.name}`)")
            raise DeviceError(self.spec.name, f"the harness failed: {message}{hint}{kept}")
