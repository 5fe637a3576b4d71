"""The device registry: TOML round trips, validation, atomic writes, and `local`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from payattn.attention import PayattnError
from payattn.devices import (
    LOCAL,
    DeviceSpec,
    add_adb_device,
    add_ssh_device,
    default_devices_file,
    get_device,
    list_devices,
    load_registry,
    remove_device,
    run_on_devices,
)
from payattn.devices.registry import parse_ssh_target, render_registry
from payattn.devices.toml_file import toml_string


@pytest.fixture
def devices(tmp_path) -> Path:
    return tmp_path / "config" / "payattn" / "devices.toml"


def test_default_file_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_devices_file() == tmp_path / "xdg" / "payattn" / "devices.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_devices_file() == tmp_path / "home" / ".config" / "payattn" / "devices.toml"


def test_add_list_remove_round_trip(devices, tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("key")
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    add_ssh_device("pi4", "pi@raspberrypi.local:2222", identity=str(key), python="/usr/bin/python3", path=devices)
    add_ssh_device("pi5", "192.168.1.20", path=devices)
    add_adb_device("pixel-7", "R5CT1234", benchmark_model=str(binary), cpu_mask="f0", path=devices)

    data = tomllib.loads(devices.read_text())
    assert data["devices"]["pi4"] == {"kind": "ssh", "host": "raspberrypi.local", "user": "pi", "port": 2222,
                                      "identity": str(key), "python": "/usr/bin/python3"}
    assert data["devices"]["pi5"] == {"kind": "ssh", "host": "192.168.1.20"}
    assert [d.name for d in list_devices(devices)] == ["local", "pi4", "pi5", "pixel-7"]
    assert get_device("pixel-7", devices) == DeviceSpec(name="pixel-7", kind="adb", serial="R5CT1234",
                                                        benchmark_model=str(binary), cpu_mask="f0")
    assert get_device("pi4", devices).target == "pi@raspberrypi.local:2222"

    removed = remove_device("pi4", devices)
    assert removed.host == "raspberrypi.local"
    assert sorted(load_registry(devices)) == ["pi5", "pixel-7"]
    assert [p.name for p in devices.parent.iterdir()] == ["devices.toml"]  # no temp files left behind


def test_local_always_exists_and_is_reserved(devices):
    assert get_device(LOCAL, devices).kind == "local"
    assert [d.name for d in list_devices(devices)] == [LOCAL]
    with pytest.raises(PayattnError, match="'local' is reserved"):
        add_ssh_device("local", "pi@host", path=devices)
    with pytest.raises(PayattnError, match="'local' is this machine and cannot be removed"):
        remove_device("local", devices)


@pytest.mark.parametrize("name", ["Pi4", "pi 4", "", "-pi", "pi.4", "π", "x" * 64])
def test_invalid_names(devices, name):
    with pytest.raises(PayattnError, match="invalid device name"):
        add_ssh_device(name, "pi@host", path=devices)
    assert not devices.exists()


def test_duplicate_and_unknown_names(devices):
    add_ssh_device("pi4", "pi@host", path=devices)
    before = devices.read_text()
    with pytest.raises(PayattnError, match=r"a device named 'pi4' already exists \(pi@host\); remove it first"):
        add_ssh_device("pi4", "pi@other", path=devices)
    assert devices.read_text() == before
    with pytest.raises(PayattnError, match="unknown device 'pi5'; known devices: local, pi4"):
        get_device("pi5", devices)
    with pytest.raises(PayattnError, match="no device named 'pi5'"):
        remove_device("pi5", devices)


@pytest.mark.parametrize("target, expected", [
    ("pi@raspberrypi.local", ("pi", "raspberrypi.local", None)),
    ("pi@10.0.0.2:2222", ("pi", "10.0.0.2", 2222)),
    ("board", (None, "board", None)),
    ("root@[fe80::1]:22", ("root", "[fe80::1]", 22)),
])
def test_parse_ssh_target(target, expected):
    assert parse_ssh_target(target) == expected


@pytest.mark.parametrize("target, problem", [
    ("pi@host:0", "port"), ("pi@host:70000", "port"), ("pi@host:ssh", "port"), ("pi@host:", "port"),
    ("pi@", "host"), ("pi@ho st", "host"), ("p i@host", "user"), ("pi@host;rm -rf", "host"),
])
def test_bad_ssh_targets(devices, target, problem):
    with pytest.raises(PayattnError, match=f"invalid SSH {problem} in .*USER@HOST"):
        add_ssh_device("pi4", target, path=devices)


def test_missing_files_and_bad_masks(devices, tmp_path):
    with pytest.raises(PayattnError, match="identity file .* does not exist"):
        add_ssh_device("pi4", "pi@host", identity=str(tmp_path / "nokey"), path=devices)
    with pytest.raises(PayattnError, match="benchmark_model binary .* does not exist; build it with `bazel build"):
        add_adb_device("phone", "SERIAL", benchmark_model=str(tmp_path / "nothing"), path=devices)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"")
    with pytest.raises(PayattnError, match="invalid CPU mask 'big'"):
        add_adb_device("phone", "SERIAL", benchmark_model=str(binary), cpu_mask="big", path=devices)
    with pytest.raises(PayattnError, match="invalid adb serial"):
        add_adb_device("phone", "two words", benchmark_model=str(binary), path=devices)
    assert not devices.exists()


def test_strings_are_escaped(devices, tmp_path):
    """Values TOML must escape survive the hand-written writer and tomllib."""
    weird = tmp_path / 'dir "with" \\ quotes\tand tab'
    weird.mkdir()
    key = weird / "id\u00e9"
    key.write_text("key")
    python = '/opt/py "3"\\bin/python3\n# [devices.evil]\x7f'
    add_ssh_device("pi4", "pi@host", identity=str(key), python=python, path=devices)
    spec = get_device("pi4", devices)
    assert (spec.identity, spec.python) == (str(key), python)
    assert list(tomllib.loads(devices.read_text())["devices"]) == ["pi4"]
    assert toml_string('a"b\\c\n\x01') == '"a\\"b\\\\c\\n\\u0001"'


def test_hand_edited_files_give_clear_errors(devices):
    """A file that is not TOML is an error; a bad entry is an error for its own name, listed
    as INVALID, and never stops the other devices."""
    devices.parent.mkdir(parents=True)
    devices.write_text("[devices.pi4\n")
    with pytest.raises(PayattnError, match="cannot read the device registry .*devices.toml.*fix or delete"):
        list_devices(devices)
    good = '[devices.ok]\nkind = "ssh"\nhost = "pi"\n'
    devices.write_text(good + '[devices.phone]\nkind = "adb"\nserial = "X"\n')  # LiteRT's prebuilt, on first use
    assert get_device("phone", devices).benchmark_model is None
    for entry, problem, name in [
        ('[devices.pi4]\nkind = "ssh"\nhost = "pi"\ncolour = "red"\n',
         r"\[devices.pi4\] in .* has unknown key\(s\) colour", "pi4"),
        ('[devices.pi4]\nkind = "ssh"\n', 'needs host = "HOST"', "pi4"),
        ('[devices.phone]\nkind = "adb"\nserial = "X"\nbenchmark_model_sha256 = "abc"\n',
         "benchmark_model_sha256 must be 64 hex digits", "phone"),
        ('[devices.local]\nkind = "ssh"\nhost = "pi"\n', "reserved", "local"),
    ]:
        devices.write_text(good + entry)
        listed = {d.name: d for d in list_devices(devices)}
        assert get_device("ok", devices).host == "pi"
        if name != "local":
            assert listed[name].kind == "INVALID"
            with pytest.raises(PayattnError, match=problem):
                get_device(name, devices)


def test_render_is_stable(devices):
    registry = {"b": DeviceSpec(name="b", kind="ssh", host="h", port=22), "a": DeviceSpec(name="a", kind="ssh", host="g")}
    text = render_registry(registry)
    assert text.index("[devices.a]") < text.index("[devices.b]")
    assert 'port = 22' in text and "port = \"22\"" not in text


def test_unknown_device_fails_before_anything_runs(devices, tmp_path):
    results_file = tmp_path / "results.jsonl"
    with pytest.raises(PayattnError, match="unknown device 'ghost'"):
        run_on_devices(["local", "ghost"], {"artifacts": []}, results_file, devices_file=devices)
    assert not results_file.exists()
