"""LiteRT's prebuilt benchmark_model: fetched once over HTTPS, checked, cached, recorded.

Every download here comes from tests/https_fixture.py's server on 127.0.0.1 (a self-signed
certificate the test makes, trusted through FetchSettings.ca_file as --ca-file does); the
phone is test_adb's stand-in adb. Nothing reaches the network.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from https_fixture import LITERT_PATH, elf
from test_adb import GETPROP, logged, phone, tflite_job  # noqa: F401  (fixtures)

from payattn.devices import AdbDevice, AdbSettings, DeviceError, add_adb_device, get_device, run_on_devices
from payattn.devices.fleet import check_device
from payattn.devices.prebuilt import LITERT_VERSION, URL_ENV, FetchSettings, cache_path, ensure_benchmark_model
from payattn.errors import PayattnError
from payattn.runtime.artifacts import sha256_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fetch(binaries_server, tmp_path):
    """FetchSettings pointed at the local server, trusting its certificate, caching in tmp_path."""
    binaries_server.files[LITERT_PATH] = elf()
    seen: list[tuple[int, int | None]] = []
    settings = FetchSettings(base_url=binaries_server.url + "/litert/binaries", ca_file=binaries_server.ca_file,
                             cache_dir=tmp_path / "cache", stall_seconds=2.0,
                             progress=lambda done, total: seen.append((done, total)))
    return settings, seen


def cached_files(settings: FetchSettings) -> list[Path]:
    return sorted(p for p in Path(settings.cache_dir).rglob("*") if p.is_file())


def test_version_is_the_pinned_litert():
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().split())
    assert LITERT_VERSION == pins["ai-edge-litert"]


def test_first_fetch_with_progress_then_cache_hit(binaries_server, fetch):
    settings, seen = fetch
    prebuilt = ensure_benchmark_model("arm64-v8a", settings)
    body = binaries_server.files[LITERT_PATH]
    assert prebuilt.path == Path(settings.cache_dir) / "benchmark_model" / "2.3.0" / "arm64-v8a" / "benchmark_model"
    assert prebuilt.path.read_bytes() == body and prebuilt.path.stat().st_mode & 0o111
    assert prebuilt.sha256 == sha256_file(prebuilt.path) and prebuilt.url == binaries_server.url + LITERT_PATH
    assert binaries_server.requests == [LITERT_PATH]
    assert len(seen) >= 4 and seen[-1] == (len(body), len(body))  # 64 KiB steps up to the whole file
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert cached_files(settings) == [prebuilt.path]  # no temp file left beside it

    again = ensure_benchmark_model("arm64-v8a", settings)
    assert again == prebuilt and binaries_server.requests == [LITERT_PATH]  # a cache hit asks nothing


def test_a_killed_fetchs_temp_file_is_removed_by_the_next(binaries_server, fetch):
    import subprocess

    settings, _ = fetch
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs
    folder = cache_path("arm64-v8a", settings).parent
    folder.mkdir(parents=True)
    leftover = folder / f".benchmark_model.payattn-{gone.pid}-k1ll3d"
    running = folder / f".benchmark_model.payattn-{os.getpid()}-busy"  # a fetch still under way
    leftover.write_bytes(b"half")
    running.write_bytes(b"half")
    prebuilt = ensure_benchmark_model("arm64-v8a", settings)
    assert sorted(p.name for p in folder.iterdir()) == sorted([prebuilt.path.name, running.name])


def test_base_url_from_the_environment(binaries_server, fetch, monkeypatch):
    settings, _ = fetch
    monkeypatch.setenv(URL_ENV, binaries_server.url + "/mirror")
    binaries_server.files["/mirror/2.3.0/android_arm64/benchmark_model"] = elf()
    ensure_benchmark_model("arm64-v8a", replace(settings, base_url=None))
    assert binaries_server.requests == ["/mirror/2.3.0/android_arm64/benchmark_model"]


@pytest.mark.parametrize("mode, body, message", [
    ("truncated", elf(), "was cut short; nothing was cached"),
    ("ok", b"<html>Not a binary</html>" * 100, "is not an executable"),
    ("ok", elf(machine=0x28), "is not built for arm64-v8a"),
    ("ok", elf(elf_class=1), "is not built for arm64-v8a"),
    ("ok", b"", "is empty"),
    ("redirect-http", elf(), "which is not HTTPS; refused"),
])
def test_bad_downloads_leave_nothing_cached(binaries_server, fetch, mode, body, message):
    settings, _ = fetch
    binaries_server.files[LITERT_PATH], binaries_server.modes[LITERT_PATH] = body, mode
    with pytest.raises(PayattnError, match=message):
        ensure_benchmark_model("arm64-v8a", settings)
    assert cached_files(settings) == []


def test_http_refused_before_connecting(binaries_server, fetch):
    settings, _ = fetch
    with pytest.raises(PayattnError, match=r"only https:// URLs are fetched"):
        ensure_benchmark_model("arm64-v8a", replace(settings, base_url=binaries_server.url.replace("https", "http")))
    assert binaries_server.requests == []


def test_untrusted_certificate_names_the_ca_option(binaries_server, fetch):
    settings, _ = fetch
    with pytest.raises(PayattnError, match=r"certificate of 127.0.0.1 is not trusted .*--ca-file"):
        ensure_benchmark_model("arm64-v8a", replace(settings, ca_file=None))
    assert cached_files(settings) == []


def test_stalled_server_meets_the_deadline(binaries_server, fetch):
    settings, _ = fetch
    binaries_server.modes[LITERT_PATH] = "stall"
    import time

    started = time.monotonic()
    with pytest.raises(PayattnError, match=r"sent nothing for 0.3 s; stopped, nothing was cached"):
        ensure_benchmark_model("arm64-v8a", replace(settings, stall_seconds=0.3))
    assert time.monotonic() - started < 5
    assert cached_files(settings) == []


def test_size_bound(binaries_server, fetch):
    settings, _ = fetch
    with pytest.raises(PayattnError, match=r"is 300000 bytes, over the 1000 bytes"):
        ensure_benchmark_model("arm64-v8a", replace(settings, max_bytes=1000))
    assert cached_files(settings) == []


def test_offline_says_what_to_put_where(binaries_server, fetch):
    settings, _ = fetch
    with pytest.raises(PayattnError) as caught:
        ensure_benchmark_model("arm64-v8a", replace(settings, offline=True))
    target = cache_path("arm64-v8a", settings)
    assert str(caught.value) == (f"--offline: no benchmark_model for LiteRT 2.3.0 arm64-v8a is cached; download "
                                 f"{binaries_server.url}{LITERT_PATH} to {target} (or pass --benchmark-model FILE)")
    assert binaries_server.requests == []
    target.parent.mkdir(parents=True)
    target.write_bytes(elf())
    assert ensure_benchmark_model("arm64-v8a", replace(settings, offline=True)).path == target


# -- through the phone -------------------------------------------------------------------------

@pytest.fixture
def litert_phone(phone, fetch):
    """test_adb's stand-in phone registered without a binary: LiteRT's prebuilt on first use."""
    add_adb_device("pixel-litert", "R5CT1234", path=phone["devices"])
    settings = AdbSettings(adb=phone["adb"], fetch=fetch[0], devices_file=phone["devices"])
    return AdbDevice(get_device("pixel-litert", phone["devices"]), settings)


def recorded(devices: Path) -> dict:
    return tomllib.loads(devices.read_text())["devices"]["pixel-litert"]


def test_first_bench_fetches_records_and_names_the_binary(binaries_server, phone, litert_phone, tflite_job):
    run = litert_phone.bench({**tflite_job, "threads": [1]})
    sha = sha256_file(cache_path("arm64-v8a", litert_phone.settings.fetch))
    assert recorded(phone["devices"]) == {"kind": "adb", "serial": "R5CT1234", "benchmark_model_version": "2.3.0",
                                          "benchmark_model_sha256": sha}
    assert {tuple(r["runtime"].items()) for r in run.results} == {
        (("name", "benchmark_model"), ("version", "litert-2.3.0"), ("graph_optimization", None), ("sha256", sha))}
    pushed = [call for call in logged(phone["log"]) if call[2] == "push"]
    assert pushed[0][3:] == [str(cache_path("arm64-v8a", litert_phone.settings.fetch)),
                             "/data/local/tmp/payattn/benchmark_model"]
    # a later bench (the registry now records the sha256) uses the cache and asks nothing
    again = AdbDevice(get_device("pixel-litert", phone["devices"]), litert_phone.settings)
    again.bench({**tflite_job, "threads": [1]})
    assert binaries_server.requests == [LITERT_PATH]


def test_changed_cached_file_is_refused(binaries_server, phone, litert_phone, tflite_job):
    litert_phone.bench({**tflite_job, "threads": [1]})
    cached = cache_path("arm64-v8a", litert_phone.settings.fetch)
    cached.write_bytes(elf(salt=b"tampered"))
    runs_before = len(logged(phone["log"]))
    device = AdbDevice(get_device("pixel-litert", phone["devices"]), litert_phone.settings)
    with pytest.raises(DeviceError, match=r"^device 'pixel-litert': the cached benchmark_model .* has sha256 "
                                          r"\w{16}…, not the \w{16}… recorded when it was first used; refused"):
        device.bench(tflite_job)
    assert not [c for c in logged(phone["log"])[runs_before:] if c[2] == "push" or "--graph=" in c[-1]]
    check = check_device("pixel-litert", devices_file=phone["devices"], adb=litert_phone.settings)
    assert not check.ok and "differs from the benchmark_model first used" in check.problems[0]


def test_wrong_file_is_refused_before_anything_runs(binaries_server, phone, litert_phone, tflite_job):
    binaries_server.files[LITERT_PATH] = elf(machine=0x3E)  # an x86_64 build
    with pytest.raises(DeviceError, match=r"is not built for arm64-v8a .*machine 0x3e"):
        litert_phone.bench(tflite_job)
    assert not [c for c in logged(phone["log"]) if c[2] == "push"]
    assert "benchmark_model_sha256" not in recorded(phone["devices"])


def test_32_bit_phone_gets_one_line_naming_the_option(binaries_server, phone, litert_phone, tflite_job,
                                                      monkeypatch):
    monkeypatch.setenv("FAKE_GETPROP", GETPROP.replace("arm64-v8a", "armeabi-v7a"))
    expected = ("device 'pixel-litert': the phone's ABI is armeabi-v7a, a 32-bit ABI LiteRT publishes no "
                "prebuilt benchmark_model for (only arm64-v8a); re-add the device with --benchmark-model "
                "FILE built for armeabi-v7a")
    with pytest.raises(DeviceError) as caught:
        litert_phone.bench(tflite_job)
    assert str(caught.value) == expected and binaries_server.requests == []
    check = check_device("pixel-litert", devices_file=phone["devices"], adb=litert_phone.settings)
    assert check.problems == [expected.split(": ", 1)[1]]


def test_offline_bench_fails_in_one_line_and_keeps_the_other_devices(binaries_server, phone, litert_phone,
                                                                     tflite_job, tmp_path):
    settings = replace(litert_phone.settings, fetch=replace(litert_phone.settings.fetch, offline=True))
    results, failures = run_on_devices(["pixel", "pixel-litert"], {**tflite_job, "threads": [1]},
                                       tmp_path / "results.jsonl", devices_file=phone["devices"], adb=settings)
    assert len(results) == 2 and {r["device"]["name"] for r in results} == {"pixel"}
    assert [f.device for f in failures] == ["pixel-litert"] and "--offline: no benchmark_model" in failures[0].message
    assert binaries_server.requests == []


# -- from the command line -------------------------------------------------------------------------

def test_cli_add_without_binary_then_bench_cpu_and_gpu(binaries_server, phone, tflite_job, tmp_path,
                                                       monkeypatch):
    from test_adb import GPU_FULL
    from typer.testing import CliRunner

    from payattn.cli import app

    runner = CliRunner()
    monkeypatch.setenv("PATH", f"{Path(phone['adb']).parent}:{os.environ['PATH']}")  # the stand-in adb
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    (tmp_path / "gpu.log").write_text(GPU_FULL)
    monkeypatch.setenv("FAKE_GPU_OUTPUT", str(tmp_path / "gpu.log"))
    binaries_server.files[LITERT_PATH] = elf()
    devices = ["--devices-file", str(phone["devices"])]
    added = runner.invoke(app, ["devices", "add", "phone-cli", "--adb", "R5CT1234", *devices])
    assert added.exit_code == 0, added.output
    results = tmp_path / "results.jsonl"
    bench = ["bench", str(tmp_path / "art-standard"), "--device", "phone-cli", "--runtime", "litert", "--threads", "1",
             "--results", str(results), *devices, "--ca-file", str(binaries_server.ca_file)]
    env = {"PAYATTN_LITERT_BINARIES_URL": binaries_server.url + "/litert/binaries"}

    refused = runner.invoke(app, [*bench, "--accelerator", "cpu,npu"], env=env)
    assert refused.exit_code == 2 and "unknown accelerator 'npu'" in refused.output
    offline = runner.invoke(app, [*bench, "--offline"], env=env)
    assert offline.exit_code == 1 and "--offline: no benchmark_model for LiteRT 2.3.0 arm64-v8a" in offline.output
    assert binaries_server.requests == []

    out = runner.invoke(app, [*bench, "--accelerator", "cpu,gpu"], env=env)
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    sha = sha256_file(tmp_path / "xdg-cache" / "payattn" / "benchmark_model" / "2.3.0" / "arm64-v8a" / "benchmark_model")
    assert [(r["accelerator"], r["runtime"]["version"], r["runtime"]["sha256"]) for r in lines] == [
        ("cpu", "litert-2.3.0", sha), ("gpu", "litert-2.3.0", sha)]
    assert binaries_server.requests == [LITERT_PATH]
    assert "benchmark_model gpu" in out.output and "phone-cli  benchmark_model " in out.output
    assert tomllib.loads(phone["devices"].read_text())["devices"]["phone-cli"]["benchmark_model_sha256"] == sha
