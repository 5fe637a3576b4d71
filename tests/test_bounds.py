"""Bounds everywhere, a registry that cannot be bricked, and words that lead to the fix.

The table runs each case in-process in a workspace of real files and asserts: exit code ≠ 0,
exactly one `error:` line holding the expected words, no traceback, not one file created or
changed, and an answer within CASE_SECONDS. The network cases run the real CLI as a child
process in a session of its own against servers on 127.0.0.1 (an HTTP server where Ray is
expected, a server that accepts and never answers, an sshd without SFTP) and assert the bound,
the one line, SIGTERM and Ctrl-C, that nothing is left behind, and which addresses were used.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sshd_fixture import running_sshd
from test_faults import snapshot
from typer.testing import CliRunner

from payattn.cli import app
from payattn.devices import SshDevice, SshSettings, add_ssh_device, check_device, get_device
from payattn.devices.base import DeviceError
from payattn.devices.registry import read_registry
from payattn.devices.ssh import explain_ssh_failure
from payattn.errors import PayattnError
from payattn.sweep import IndexWriter, PointResult, make_spec, write_index

runner = CliRunner()
PAYATTN = str(Path(sys.executable).with_name("payattn"))
CASE_SECONDS = 5.0  # every table case answers within this, however big the value given
LONG = "a" * 70_000
HOST_4000 = "a" * 4_000


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bounds")
    (root / "a-file").write_text("a file, not a folder")
    (root / "data").mkdir()
    (root / "config").mkdir()
    (root / "bad.toml").write_text('[devices.bad]\nkind = "ssh"\nhost = "pi"\npython = "-c"\n'
                                   '[devices.ok]\nkind = "ssh"\nhost = "pi.local"\n')
    return root


D = "--devices-file config/d.toml"
CASES = [
    # seeds: the words name what is wrong, the count is bounded before any list is built
    ("sweep --seeds 3-1 --out s", "--seeds 3-1: the range is empty (1 is below 3); write the lower seed first, e.g. --seeds 1-3"),
    ("sweep --seeds 0 --out s", "--seeds 0 is a count of no seeds; give at least 1"),
    ("sweep --seeds , --out s", "--seeds ',' lists no seeds"),
    ("sweep --seeds 1,1 --out s", "--seeds must give distinct seeds; given more than once: 1"),
    ("sweep --seeds 1000000 --out s", "--seeds 1000000 gives 1,000,000 seeds; a sweep takes at most 10,000 points; split it"),
    ("sweep --seeds 0-99999999999 --out s", "gives 100,000,000,000 seeds; a sweep takes at most 10,000"),
    ("export --sweep s --seeds 0-99999999999", "gives 100,000,000,000 seeds"),
    # the grid, before any point is built
    ("sweep -m all --seeds 2000 --heads 1,2 --out s",
     "the sweep has 16,000 points (4 mechanisms × 2,000 seeds × 2 --heads values); a sweep takes at most 10,000 points; split it"),
    # every numeric option has its bound in the message
    ("sweep --workers 0 --out s", "'--workers': must be a whole number from 1 to 256, got 0"),
    ("sweep --workers -3 --out s", "'--workers': must be a whole number from 1 to 256, got -3"),
    ("sweep --workers 100000 --out s", "'--workers': must be a whole number from 1 to 256, got 100000"),
    # string lengths, before any parsing
    (f"devices add pi --ssh pi@{LONG} {D}", "--ssh: a value of 70,003 characters is over payattn's bound of 4,096"),
    (f"devices add pi --ssh=pi@{LONG} {D}", "--ssh: a value of 70,009 characters is over payattn's bound"),
    (f"sweep --seeds {'1,' * 3000} --out s", "--seeds: a value of 6,000 characters is over"),
    (f"devices add pi --ssh pi@{HOST_4000} {D}", "invalid SSH target 'pi@aaaa"),
    (f"devices add pi --ssh pi@{'a' * 254} {D}", "a host name is at most 253 characters (DNS), got 254"),
    (f"devices add pi --ssh pi@{'a' * 64}.local {D}", "each dot-separated part of a host name is 1-63"),
    (f"devices add pi --ssh {'u' * 33}@host {D}", "invalid SSH user"),
    (f"devices add pi --ssh pi@[fe80::zz] {D}", "is not an IPv6 address in brackets"),
    # the registry: what add accepts, every reader accepts
    (f"devices add pi --ssh pi@host --python=-c {D}", "device 'pi': python '-c' is not a program"),
    (f"devices add ph --adb -d --benchmark-model /bin/true {D}", "device 'ph': serial '-d' is not an adb serial"),
    ("devices check bad --devices-file bad.toml", "python '-c' is not a program; name the device's Python, e.g. python3 or /usr/bin/python3; fix the entry, or remove it with `payattn devices remove bad`"),
    # words that lead to the fix
    ("sweep --data-dir data --out s", "task 'mnist-5k' is embedded in payattn and reads no --data-dir; drop --data-dir data, or --task mnist"),
    ("train --data-dir data --out r", "task 'mnist-5k' is embedded in payattn and reads no --data-dir"),
    ("demo --out a-file", "a-file exists and is not a folder; choose another --out"),
    ("demo --out a-file --force", "a-file exists and is not a folder; choose another --out"),
]


@pytest.mark.parametrize("line,expected", CASES, ids=[c[0][:50] for c in CASES])
def test_bad_input_is_one_line_within_a_bound_and_changes_nothing(
        ws: Path, line: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(ws / "config"))
    monkeypatch.setenv("MPLCONFIGDIR", str(ws.parent / "matplotlib"))  # its cache is not ours
    before = snapshot(ws)
    started = time.perf_counter()
    result = runner.invoke(app, line.split())
    seconds = time.perf_counter() - started
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[:2000]
    assert expected in lines[0], lines[0][:2000]
    assert "pass --force" not in lines[0]  # never suggests what cannot help
    assert len(lines[0]) < 600  # a huge value is cut in the message
    assert "Traceback" not in result.output + result.stderr
    assert seconds < CASE_SECONDS, f"{line[:60]} took {seconds:.1f} s"
    assert snapshot(ws) == before


# ---- the registry ---------------------------------------------------------------------------


def test_an_invalid_entry_is_listed_removable_and_bricks_nothing(tmp_path: Path) -> None:
    devices = tmp_path / "devices.toml"
    devices.write_text('top = 1\n[devices.bad]\nkind = "adb"\nserial = "-d"\nbenchmark_model = "/x"\n'
                       'when = 1979-05-27T07:32:00Z\nextra = [1.5, {a = "b"}]\n'
                       '[devices.worse]\nkind = "ssh"\nhost = "pi"\npython = "-c"\n'
                       '[devices.ok]\nkind = "ssh"\nhost = "pi.local"\nport = 2222\n')
    listed = runner.invoke(app, ["devices", "list", "--devices-file", str(devices)], terminal_width=300)
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if "│" in line}
    assert "INVALID" in rows["bad"] and "[devices.bad]" in rows["bad"]
    assert "INVALID" in rows["worse"] and "python '-c'" in rows["worse"]
    assert "INVALID" not in rows["ok"]
    assert get_device("ok", devices).port == 2222  # every other device stays usable
    add_ssh_device("new", "pi@board", path=devices)  # and the registry takes new ones
    removed = runner.invoke(app, ["devices", "remove", "bad", "--devices-file", str(devices)])
    assert removed.exit_code == 0, removed.stderr
    registry, invalid = read_registry(devices)
    assert sorted(registry) == ["new", "ok"] and list(invalid) == ["worse"]
    import tomllib
    assert tomllib.loads(devices.read_text())["top"] == 1  # what payattn does not know is kept
    assert runner.invoke(app, ["devices", "remove", "worse", "--devices-file", str(devices)]).exit_code == 0
    assert read_registry(devices)[1] == {}


@pytest.mark.parametrize("field,value", [
    ("python", "-c"), ("python", "  "), ("serial", "-d"), ("serial", "a b"), ("serial", "x\x01"),
    ("host", "a" * 254), ("host", "-host"), ("host", "a..b"), ("user", "-oProxyCommand=x"),
    ("user", "u" * 33), ("cpu_mask", "big"), ("serial", "s" * 129), ("python", "p" * 4097),
])
def test_add_refuses_exactly_what_the_readers_refuse(tmp_path: Path, field: str, value: str) -> None:
    """A value the reader marks invalid in a hand-written file is one `devices add` refuses,
    with the same words, and writes nothing."""
    from payattn.devices.registry import DeviceSpec, _store_new, entry_spec
    from payattn.devices.toml_file import render_document

    adb = field in ("serial", "cpu_mask")
    base = {"kind": "adb", "serial": "R5CT", "benchmark_model": "/bin/true"} if adb else {
        "kind": "ssh", "host": "pi"}
    entry = {**base, field: value}
    hand = tmp_path / "hand.toml"
    hand.write_text(render_document({"devices": {"d": entry}}))
    _, invalid = read_registry(hand)
    assert "d" in invalid
    devices = tmp_path / "devices.toml"
    with pytest.raises(PayattnError) as refused:
        _store_new(DeviceSpec(name="d", **entry), devices)
    with pytest.raises(PayattnError) as read:
        entry_spec("d", entry, "here")
    assert str(refused.value).split(": ", 1)[1] == str(read.value).split(": ", 1)[1]
    assert not devices.exists()


# ---- the sweep index: linear in the points finished ------------------------------------------


def test_the_index_is_rewritten_in_time_linear_in_the_points_finished(tmp_path: Path) -> None:
    spec = make_spec("mnist-5k", ["standard", "optimised", "efficient", "super"], list(range(500)))
    points = spec.points()
    assert len(points) == 2_000
    writer = IndexWriter(tmp_path, spec, points, {})
    results: dict[str, PointResult] = {}
    started = time.perf_counter()
    writer.write(results)
    for point in points:
        results[point.id] = PointResult(point, "done", {"test_accuracy": 0.5}, seconds=1.0, where="here")
        writer.finished(results, 1)
    writer.flush(results)
    seconds = time.perf_counter() - started
    size = (tmp_path / "sweep.json").stat().st_size
    # One rewrite per 1/64 of the grid (plus the first and the last), not one per point.
    assert writer.writes <= 64 + 2, writer.writes
    assert all(e["status"] == "done" for e in json.loads((tmp_path / "sweep.json").read_text())["points"])
    one = time.perf_counter()
    write_index(tmp_path, spec, points, results, {})
    per_write = time.perf_counter() - one
    print(f"2,000 points: {writer.writes} index writes, {seconds:.2f} s in all; one write "
          f"{per_write * 1000:.0f} ms of {size / 2**20:.2f} MiB (one per point: ~{per_write * 2_000:.0f} s)")
    assert seconds < 80 * per_write + 5


def test_a_small_sweep_still_indexes_every_point_as_it_ends(tmp_path: Path) -> None:
    spec = make_spec("mnist-5k", ["standard", "efficient"], [0, 1])
    points = spec.points()
    writer = IndexWriter(tmp_path, spec, points, {})
    results: dict[str, PointResult] = {}
    for point in points:
        results[point.id] = PointResult(point, "failed", error="x")
        writer.finished(results, 1)
        statuses = [e["status"] for e in json.loads((tmp_path / "sweep.json").read_text())["points"]]
        assert statuses.count("failed") == len(results)


def test_a_folder_indexing_too_many_points_is_refused(tmp_path: Path) -> None:
    from payattn import sweep

    spec = make_spec("mnist-5k", ["standard"], list(range(3)))
    other = make_spec("mnist-5k", ["super"], [0])
    write_index(tmp_path, other, other.points(), {}, {})
    template = json.loads((tmp_path / "sweep.json").read_text())["points"][0]
    earlier = {f"super/seed-{i}": {**template, "id": f"super/seed-{i}", "seed": i,
                                   "run_dir": f"runs/super/seed-{i}"}
               for i in range(sweep.MAX_INDEX_POINTS - 2)}  # from earlier sweeps into this folder
    write_index(tmp_path, other, [], {}, earlier)
    with pytest.raises(PayattnError, match=r"would index 100,001 points, over the 100,000 one sweep "
                                           r"folder takes; sweep the rest into a new --out"):
        sweep.run_sweep(spec, tmp_path)


# ---- network waits: a real child process, servers on 127.0.0.1 ------------------------------


class Server:
    """A TCP server on 127.0.0.1 in a thread: `http` answers HTTP/1.1 (what Ray's port must
    not be), otherwise it accepts and never says a word. It records who connected."""

    def __init__(self, http: bool) -> None:
        self.peers: list[str] = []
        self.accepted = threading.Event()
        if http:
            server = self

            class Handler(BaseHTTPRequestHandler):
                def setup(self) -> None:
                    server.peers.append(self.client_address[0])
                    server.accepted.set()
                    super().setup()

                def log_message(self, *args: object) -> None:
                    pass

            self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self.port = self.http.server_address[1]
            threading.Thread(target=self.http.serve_forever, daemon=True).start()
        else:
            self.http = None
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.held: list[socket.socket] = []
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.peers.append(peer[0])
            self.accepted.set()

    def close(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        else:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self.sock.close()
            for conn in self.held:
                conn.close()


@pytest.fixture
def http_server():
    server = Server(http=True)
    yield server
    server.close()


@pytest.fixture
def silent_server():
    server = Server(http=False)
    yield server
    server.close()


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "XDG_CONFIG_HOME": str(cwd / "config")}
    return subprocess.Popen([PAYATTN, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def finish(proc: subprocess.Popen, seconds: float) -> tuple[int, str, float]:
    """Wait at most `seconds` for the child; then assert its whole session is gone."""
    started = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"still running after {seconds} s")
    took = time.monotonic() - started
    deadline = time.monotonic() + 2.0  # no child of it (ssh, a Ray process) is left
    while time.monotonic() < deadline and group_alive(proc.pid):
        time.sleep(0.05)
    left = subprocess.run(["ps", "-eo", "pid,pgid,stat,args"], capture_output=True, text=True).stdout
    assert not group_alive(proc.pid), [l for l in left.splitlines() if l.split()[1] == str(proc.pid)]
    return proc.returncode, stderr, took


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
    return lines[0]


SWEEP = ["sweep", "-m", "standard", "--seeds", "1", "--epochs", "1", "--out", "sw"]


def test_ray_at_an_http_port_is_one_line_at_once_and_stays_on_that_address(http_server, tmp_path):
    proc = start([*SWEEP, "--ray", f"127.0.0.1:{http_server.port}"], tmp_path)
    code, stderr, took = finish(proc, 30)
    line = one_error_line(stderr)
    assert code == 2 and took < 15, (code, took)
    assert f"'127.0.0.1:{http_server.port}' answers, but not as a Ray cluster" in line, line
    assert "(no gRPC; it said " in line and "give the address of the Ray head" in line
    assert set(http_server.peers) == {"127.0.0.1"}  # only ever the address given
    assert not (tmp_path / "sw").exists()


def test_a_silent_ray_port_is_bounded_by_its_deadline(silent_server, tmp_path):
    proc = start([*SWEEP, "--ray", f"127.0.0.1:{silent_server.port}"], tmp_path)
    code, stderr, took = finish(proc, 30)
    line = one_error_line(stderr)
    assert code == 2 and took < 20, (code, took)
    assert "did not answer within 5 s" in line, line
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("sig,code,words", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                            (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_ctrl_c_end_a_ray_wait_at_once(silent_server, tmp_path, sig, code, words):
    proc = start([*SWEEP, "--ray", f"127.0.0.1:{silent_server.port}"], tmp_path)
    assert silent_server.accepted.wait(30), "payattn never connected"
    proc.send_signal(sig)
    returncode, stderr, took = finish(proc, 10)
    assert returncode == code and took < 3, (returncode, took, stderr)
    assert one_error_line(stderr) == f"error: {words}"
    assert not (tmp_path / "sw").exists()


def test_sigterm_ends_an_ssh_wait_and_takes_ssh_along(silent_server, tmp_path):
    (tmp_path / "config").mkdir()
    add_ssh_device("mute", f"pi@127.0.0.1:{silent_server.port}", path=tmp_path / "d.toml")
    proc = start(["devices", "check", "mute", "--devices-file", "d.toml"], tmp_path)
    assert silent_server.accepted.wait(30), "ssh never connected"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    returncode, stderr, took = finish(proc, 10)  # finish asserts that no ssh is left
    assert returncode == 143 and took < 3, (returncode, took, stderr)
    assert one_error_line(stderr) == "error: terminated (SIGTERM)"


def test_sigterm_ends_a_remote_bench_running_on_a_device_thread(silent_server, tmp_path):
    """A device's wait runs on a thread of its own, which no signal reaches: the main thread
    stops its ssh for it."""
    from tiny_artifacts import copy_artifact_dirs

    vision = copy_artifact_dirs(tmp_path / "tiny")["vision"]
    (tmp_path / "config").mkdir()
    add_ssh_device("mute", f"pi@127.0.0.1:{silent_server.port}", path=tmp_path / "d.toml")
    proc = start(["bench", str(vision), "--device", "mute", "--devices-file", "d.toml", "--runtime",
                  "onnxruntime", "--results", "r.jsonl"], tmp_path)
    assert silent_server.accepted.wait(60), "ssh never connected"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    returncode, stderr, took = finish(proc, 10)
    assert returncode == 143 and took < 3, (returncode, took, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == "error: terminated (SIGTERM)", stderr  # after bench's progress lines
    assert not any("FAILED" in line or line.startswith("error:") for line in lines[:-1]), stderr


# ---- SSH words --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd_without_sftp(tmp_path_factory: pytest.TempPathFactory):
    with running_sshd(tmp_path_factory.mktemp("sshd-nosftp"), sftp=False) as server:
        yield server


def test_a_board_without_sftp_says_so_in_check_and_in_copy(sshd_without_sftp, tmp_path):
    server = sshd_without_sftp
    devices = tmp_path / "devices.toml"
    add_ssh_device("nosftp", server.target, identity=str(server.identity), python=sys.executable,
                   path=devices)
    settings = SshSettings(config_file=server.ssh_config, remote_dir=str(tmp_path / "cache"),
                           connect_timeout=5, timeout=60)
    check = check_device("nosftp", devices_file=devices, ssh=settings)
    assert not check.ok
    words = f"the SSH server on 127.0.0.1:{server.port} has no SFTP subsystem, which scp needs"
    assert any(words in p and "Subsystem sftp internal-sftp" in p for p in check.problems), check.problems
    local = tmp_path / "file.bin"
    local.write_bytes(b"x")
    with SshDevice(get_device("nosftp", devices), settings) as device:
        with pytest.raises(DeviceError) as copying:
            device.sync([(local, "x/file.bin")])
    assert words in str(copying.value) and "dropped" not in str(copying.value)


def test_the_host_key_advice_is_the_command_that_fixes_it(sshd_server, tmp_path):
    """The advised command uses the device's own known-hosts file: run as advised (accepting
    the key, as the user would after checking it), the device then connects."""
    known = tmp_path / "board_known_hosts"
    known.write_text("")
    devices = tmp_path / "devices.toml"
    add_ssh_device("keyed", sshd_server.target, identity=str(sshd_server.identity), known_hosts=str(known),
                   python=sys.executable, path=devices)
    spec = get_device("keyed", devices)
    settings = SshSettings(remote_dir=str(tmp_path / "cache"), connect_timeout=5, timeout=60,
                           options=("LogLevel=ERROR",))
    with pytest.raises(DeviceError) as refused:
        SshDevice(spec, settings).open()
    message = str(refused.value)
    assert f"not in {known}" in message
    advised = message.split("check and accept it with `", 1)[1].split("`", 1)[0]
    assert advised == f"ssh -o UserKnownHostsFile={known} -p {sshd_server.port} {sshd_server.user}@127.0.0.1"
    argv = advised.split() + ["-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
                              "-i", str(sshd_server.identity), "true"]
    subprocess.run(argv, check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    with SshDevice(spec, settings) as device:  # the key is now where payattn looks
        assert device.run("true").returncode == 0
    changed = explain_ssh_failure(spec, "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!")
    assert f"ssh-keygen -f {known} -R '[127.0.0.1]:{sshd_server.port}'" in changed
