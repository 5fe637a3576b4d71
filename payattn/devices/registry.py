"""The device registry: named SSH and ADB devices kept in a small TOML file.

The file lives in the user's config dir (`$XDG_CONFIG_HOME/payattn/devices.toml`, by default
`~/.config/payattn/devices.toml`) so that `payattn bench --device pi4` works from any checkout.
It is read with tomllib and written back whole by payattn.devices.toml_file, atomically.
One set of rules (entry_spec) decides what a valid entry is, for the readers and for
`devices add` before it writes; an entry that breaks them is listed as invalid, can be
removed, and never stops another device from being used. `local` (this machine) always
exists and is never stored.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from payattn.devices.toml_file import render_document, write_text_atomic
from payattn.errors import PayattnError

LOCAL = "local"
_RECORD_LOCK = threading.Lock()
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
USER_PATTERN = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
MASK_PATTERN = re.compile(r"^(?:0x)?[0-9A-Fa-f]+$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MAX_REGISTRY_BYTES = 1 << 20


@dataclass(frozen=True)
class DeviceSpec:
    """One registry entry. SSH fields: host, user, port, identity, known_hosts (a host-key file
    used instead of the user's, for boards whose key is generated, like the emulated Pi), python; ADB: serial,
    benchmark_model (a path on this machine, pushed to the phone; absent: LiteRT's prebuilt,
    fetched on first use, whose version and sha256 are then recorded), cpu_mask (for taskset)."""

    name: str
    kind: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    known_hosts: str | None = None
    python: str | None = None
    serial: str | None = None
    benchmark_model: str | None = None
    cpu_mask: str | None = None
    benchmark_model_version: str | None = None
    benchmark_model_sha256: str | None = None

    @property
    def target(self) -> str:
        """What the device is: `user@host:port`, `adb SERIAL`, or `this machine`."""
        if self.kind == "ssh":
            user = f"{self.user}@" if self.user else ""
            port = f":{self.port}" if self.port else ""
            return f"{user}{self.host}{port}"
        if self.kind == "adb":
            return f"adb {self.serial}"
        return "this machine"

    def to_entry(self) -> dict[str, str | int]:
        """The TOML table for this device (None fields left out)."""
        entry: dict[str, str | int] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "name" and value is not None:
                entry[f.name] = value
        return entry


LOCAL_SPEC = DeviceSpec(name=LOCAL, kind="local")


def default_devices_file() -> Path:
    """`$XDG_CONFIG_HOME/payattn/devices.toml`, falling back to `~/.config/payattn/devices.toml`."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "payattn" / "devices.toml"


def validate_name(name: str) -> str:
    """Device names are short lowercase identifiers, so they are safe in TOML, paths and shells."""
    if name == LOCAL:
        raise PayattnError("the device name 'local' is reserved for this machine; choose another name")
    if not NAME_PATTERN.match(name):
        raise PayattnError(
            f"invalid device name {name!r}: use 1-63 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit (e.g. pi4, pixel-8)"
        )
    return name


MAX_HOST = 253  # DNS: a name of at most 253 characters, each label at most 63
MAX_LABEL = 63
MAX_USER = 32  # Linux login names (useradd's limit)
MAX_SERIAL = 128
MAX_PATH = 4096  # PATH_MAX
MAX_MASK = 32  # hex digits: 128 CPUs


def shown(value: str, width: int = 60) -> str:
    """A value as quoted in a message: a huge one is cut, so the message stays one line."""
    return repr(value) if len(value) <= width else repr(value[:width]) + f"… ({len(value):,} characters)"


def parse_ssh_target(target: str) -> tuple[str | None, str, int | None]:
    """Split `[USER@]HOST[:PORT]` (an IPv6 host in brackets) into (user, host, port). The
    length is checked first: no pattern ever runs on a value longer than its bound."""
    usage = "expected USER@HOST or USER@HOST:PORT, e.g. pi@raspberrypi.local:22"
    longest = MAX_USER + 1 + MAX_HOST + 2 + 6
    if len(target) > longest:
        raise PayattnError(f"invalid SSH target {shown(target)}: at most {longest} characters "
                           f"(a login name of {MAX_USER}, a host name of {MAX_HOST}, a port); {usage}")
    user, _, hostport = target.rpartition("@")
    host, port_text = hostport, ""
    if hostport.startswith("["):
        close = hostport.find("]")
        host, rest = hostport[: close + 1], hostport[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            host = ""
        port_text = rest[1:]
    elif ":" in hostport:
        host, _, port_text = hostport.partition(":")
    if user and (len(user) > MAX_USER or not USER_PATTERN.match(user)):
        raise PayattnError(f"invalid SSH user in {shown(target)}: 1-{MAX_USER} letters, digits, '.', "
                           f"'_' or '-', not starting with '-'; {usage}")
    problem = check_host(host)
    if problem:
        raise PayattnError(f"invalid SSH host in {shown(target)}: {problem}; {usage}")
    port: int | None = None
    if port_text or hostport.endswith(":"):
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise PayattnError(f"invalid SSH port in {shown(target)}: use 1-65535; {usage}")
        port = int(port_text)
    return user or None, host, port


def check_host(host: str) -> str | None:
    """What is wrong with an SSH host (a DNS name, an IPv4 address or a bracketed IPv6 one),
    or None. The length is checked before any pattern, so a huge value costs nothing."""
    if not host or len(host) > MAX_HOST + 2:
        return f"a host name is 1-{MAX_HOST} characters, got {len(host):,}"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1] if host.endswith("]") else "?")
        except ValueError:
            return f"{host[:40]!r} is not an IPv6 address in brackets"
        return None
    if len(host) > MAX_HOST:
        return f"a host name is at most {MAX_HOST} characters (DNS), got {len(host):,}"
    for label in host.split("."):
        if not 1 <= len(label) <= MAX_LABEL or not LABEL_PATTERN.match(label):
            return (f"each dot-separated part of a host name is 1-{MAX_LABEL} letters, digits or "
                    f"'-' (not at either end), got {label[:40]!r}")
    return None


def read_registry(path: Path | None = None) -> tuple[dict[str, DeviceSpec], dict[str, str]]:
    """The stored devices by name (without `local`), and the entries that are not valid devices,
    each with what is wrong and the fix. One bad entry never hides the others; a file that is
    not TOML at all is an error. A missing file is an empty registry."""
    path = Path(path) if path is not None else default_devices_file()
    tables = _devices_table(_read_document(path), path)
    specs: dict[str, DeviceSpec] = {}
    invalid: dict[str, str] = {}
    for name, entry in tables.items():
        try:
            specs[name] = entry_spec(name, entry, f"[devices.{name}] in {path}")
        except PayattnError as exc:
            invalid[name] = str(exc)
    return specs, invalid


def load_registry(path: Path | None = None) -> dict[str, DeviceSpec]:
    """The valid stored devices by name (without `local`); see read_registry for the others."""
    return read_registry(path)[0]


def _read_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    if not path.is_file():
        raise PayattnError(f"the device registry {path} is not a file; pass a file path to --devices-file")
    try:
        if path.stat().st_size > MAX_REGISTRY_BYTES:
            raise PayattnError(f"the device registry {path} is over {MAX_REGISTRY_BYTES // 2**20} MiB, "
                               "more than any list of devices; fix or delete the file")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PayattnError(f"cannot read the device registry {path} ({exc.strerror}); check its permissions") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PayattnError(f"cannot read the device registry {path}: {exc}; fix or delete the file") from None


def _devices_table(document: dict[str, Any], path: Path) -> dict[str, Any]:
    tables = document.get("devices", {})
    if not isinstance(tables, dict):
        raise PayattnError(f"{path}: 'devices' must be a table of [devices.NAME] entries; fix or delete the file")
    return tables


def entry_spec(name: str, entry: Any, where: str) -> DeviceSpec:
    """The device a registry entry describes, by the one set of rules that both the readers
    and `devices add` apply (add checks its new entry with this before writing anything)."""
    if not isinstance(entry, dict):
        raise PayattnError(f"{where} is not a table; fix it or remove it with `payattn devices remove`")
    known = {f.name for f in fields(DeviceSpec)} - {"name"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise PayattnError(f"{where} has unknown key(s) {', '.join(unknown)}; "
                           f"valid keys: {', '.join(sorted(known))}")
    try:
        validate_name(name)
    except PayattnError as exc:
        raise PayattnError(f"{where}: {exc}") from None
    if "kind" not in entry:
        raise PayattnError(f"{where} has no kind; add kind = \"ssh\" or kind = \"adb\"")
    spec = DeviceSpec(name=name, **entry)
    _check_entry(spec, where)
    return spec


def _check_entry(spec: DeviceSpec, where: str) -> None:
    """Reject an entry that could not work, naming the missing or wrong key. Every length is
    checked before any pattern."""
    bounds = {"user": MAX_USER, "serial": MAX_SERIAL, "cpu_mask": MAX_MASK, "host": MAX_HOST + 2,
              "benchmark_model_version": 64, "benchmark_model_sha256": 64}
    for key in ("user", "identity", "known_hosts", "python", "cpu_mask", "host", "serial", "benchmark_model",
                "benchmark_model_version", "benchmark_model_sha256"):
        value = getattr(spec, key)
        if value is not None and not isinstance(value, str):
            raise PayattnError(f"{where}: {key} must be a string in quotes")
        if value is not None and len(value) > bounds.get(key, MAX_PATH):
            raise PayattnError(f"{where}: {key} is {len(value):,} characters, over its bound of "
                               f"{bounds.get(key, MAX_PATH):,}")
    if spec.kind == "ssh":
        if not isinstance(spec.host, str):
            raise PayattnError(f"{where}: an ssh device needs host = \"HOST\" (a name or address)")
        problem = check_host(spec.host)
        if problem:
            raise PayattnError(f"{where}: invalid host: {problem}")
        if spec.port is not None and (isinstance(spec.port, bool) or not isinstance(spec.port, int)
                                      or not 0 < spec.port < 65536):
            raise PayattnError(f"{where}: port must be an integer 1-65535 without quotes, e.g. port = 22")
        if spec.user is not None and not USER_PATTERN.match(spec.user):
            raise PayattnError(f"{where}: user {spec.user!r} is not a valid login name (letters, digits, "
                               f"'.', '_', '-', not starting with '-')")
        if spec.python is not None and (not spec.python.strip() or spec.python.startswith("-")):
            raise PayattnError(f"{where}: python {spec.python!r} is not a program; name the device's "
                               "Python, e.g. python3 or /usr/bin/python3")
    elif spec.kind == "adb":
        if not isinstance(spec.serial, str) or not spec.serial:
            raise PayattnError(f"{where}: an adb device needs serial = \"SERIAL\" (see `adb devices`)")
        if spec.serial.startswith("-") or not spec.serial.isprintable() or " " in spec.serial:
            raise PayattnError(f"{where}: serial {spec.serial!r} is not an adb serial; copy it from `adb devices`")
        if spec.benchmark_model == "":
            raise PayattnError(f"{where}: benchmark_model must be a path; leave it out to use LiteRT's prebuilt")
        sha = spec.benchmark_model_sha256
        if sha is not None and not SHA256_PATTERN.match(sha):
            raise PayattnError(f"{where}: benchmark_model_sha256 must be 64 hex digits; delete the line "
                               "to fetch and record it again")
        if spec.cpu_mask is not None and not MASK_PATTERN.match(spec.cpu_mask):
            raise PayattnError(f"{where}: cpu_mask must be a hex taskset mask such as \"f0\"")
    else:
        raise PayattnError(f"{where}: kind must be \"ssh\" or \"adb\", not {spec.kind!r}")


@dataclass(frozen=True)
class InvalidEntry:
    """A registry entry that is not a usable device: listed (marked), removable, never used."""

    name: str
    problem: str
    kind: str = "INVALID"

    @property
    def target(self) -> str:
        return self.problem


def list_devices(path: Path | None = None) -> list[DeviceSpec | InvalidEntry]:
    """`local` first, then the stored entries by name, invalid ones marked (never dropped)."""
    registry, invalid = read_registry(path)
    entries: dict[str, DeviceSpec | InvalidEntry] = {**registry}
    entries.update({name: InvalidEntry(name, problem) for name, problem in invalid.items()})
    return [LOCAL_SPEC] + [entries[name] for name in sorted(entries)]


def get_device(name: str, path: Path | None = None) -> DeviceSpec:
    """The device called `name`; an unknown name lists the known ones. An invalid entry is an
    error for its own name only: every other device stays usable."""
    if name == LOCAL:
        return LOCAL_SPEC
    registry, invalid = read_registry(path)
    if name in invalid:
        raise PayattnError(f"{invalid[name]}; fix the entry, or remove it with "
                           f"`payattn devices remove {name}` and add it again")
    if name not in registry:
        known = ", ".join([LOCAL] + sorted(registry))
        if invalid:
            known += f" (and invalid entries {', '.join(sorted(invalid))}: see `payattn devices list`)"
        raise PayattnError(
            f"unknown device {name!r}; known devices: {known}. "
            "Add one with `payattn devices add NAME --ssh USER@HOST` or `--adb SERIAL`"
        )
    return registry[name]


def add_device(
    name: str,
    *,
    ssh: str | None = None,
    adb: str | None = None,
    identity: Path | None = None,
    known_hosts: Path | None = None,
    python: str | None = None,
    benchmark_model: Path | None = None,
    cpu_mask: str | None = None,
    path: Path | None = None,
) -> DeviceSpec:
    """`payattn devices add`: an SSH board or an ADB phone, refusing the other kind's options."""
    if (ssh is None) == (adb is None):
        raise PayattnError("give exactly one of --ssh USER@HOST[:PORT] or --adb SERIAL")
    if ssh is not None:
        if benchmark_model or cpu_mask:
            raise PayattnError("--benchmark-model and --cpu-mask are for --adb devices")
        return add_ssh_device(name, ssh, identity=str(identity) if identity else None,
                              known_hosts=str(known_hosts) if known_hosts else None,
                              python=python, path=path)
    if identity or known_hosts or python:
        raise PayattnError("--identity, --known-hosts and --python are for --ssh devices")
    return add_adb_device(name, adb, benchmark_model=str(benchmark_model) if benchmark_model else None,
                          cpu_mask=cpu_mask, path=path)


def add_ssh_device(
    name: str,
    target: str,
    *,
    identity: str | None = None,
    known_hosts: str | None = None,
    python: str | None = None,
    path: Path | None = None,
) -> DeviceSpec:
    """Register `name` as an SSH device at `[USER@]HOST[:PORT]`."""
    validate_name(name)
    user, host, port = parse_ssh_target(target)
    if identity is not None:
        identity = _existing_file(identity, "SSH identity file", "pass the private key, e.g. ~/.ssh/id_ed25519")
    if known_hosts is not None:
        known_hosts = _existing_file(known_hosts, "known_hosts file", "pass a file of `[HOST]:PORT KEY` lines")
    if python is not None and not python.strip():
        raise PayattnError("--python must name the device's Python, e.g. python3 or /usr/bin/python3")
    spec = DeviceSpec(name=name, kind="ssh", host=host, user=user, port=port, identity=identity,
                      known_hosts=known_hosts, python=python)
    _store_new(spec, path)
    return spec


def _existing_file(given: str, what: str, fix: str) -> str:
    path = Path(given).expanduser()
    if not path.is_file():
        raise PayattnError(f"{what} {given} does not exist; {fix}")
    return str(path.resolve())


def add_adb_device(
    name: str,
    serial: str,
    *,
    benchmark_model: str | None = None,
    cpu_mask: str | None = None,
    path: Path | None = None,
) -> DeviceSpec:
    """Register `name` as an Android phone reached with `adb -s SERIAL`; without a
    benchmark_model, LiteRT's prebuilt one is fetched on first use."""
    validate_name(name)
    if not serial or any(c.isspace() for c in serial):
        raise PayattnError(f"invalid adb serial {serial!r}; copy it from the first column of `adb devices`")
    binary = Path(benchmark_model).expanduser() if benchmark_model else None
    if binary is not None and not binary.is_file():
        raise PayattnError(
            f"benchmark_model binary {benchmark_model} does not exist; build it with `bazel build -c opt "
            "--config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model` or download "
            "TensorFlow's prebuilt android_aarch64_benchmark_model, then pass its path"
        )
    if cpu_mask is not None and not MASK_PATTERN.match(cpu_mask):
        raise PayattnError(f"invalid CPU mask {cpu_mask!r}: give a hex taskset mask such as f0 "
                           "(the big cores on many phones)")
    spec = DeviceSpec(
        name=name, kind="adb", serial=serial, benchmark_model=str(binary.resolve()) if binary else None,
        cpu_mask=cpu_mask)
    _store_new(spec, path)
    return spec


def record_benchmark_model(name: str, version: str, sha256: str, path: Path | None = None) -> DeviceSpec:
    """Record the prebuilt benchmark_model a phone first ran, so a changed file is noticed.
    Every other entry, valid or not, is kept as it was."""
    path = Path(path) if path is not None else default_devices_file()
    with _RECORD_LOCK:  # phones bench at once, each on its own thread
        registry, _ = read_registry(path)
        if name not in registry:
            raise PayattnError(f"no device named {name!r} in {path}; add it with `payattn devices add`")
        spec = replace(registry[name], benchmark_model_version=version, benchmark_model_sha256=sha256)
        entry_spec(name, spec.to_entry(), f"device {name!r}")
        _rewrite(path, lambda tables: tables.__setitem__(name, spec.to_entry()))
    return spec


def remove_device(name: str, path: Path | None = None) -> DeviceSpec | InvalidEntry:
    """Forget the entry called `name` (a valid device or an invalid one) and return what it
    was; every other entry is kept exactly as it was."""
    path = Path(path) if path is not None else default_devices_file()
    registry, invalid = read_registry(path)
    if name == LOCAL and name not in invalid:  # a stored [devices.local] is invalid: removable
        raise PayattnError("'local' is this machine and cannot be removed")
    if name not in registry and name not in invalid:
        known = ", ".join(sorted([*registry, *invalid])) or "none"
        raise PayattnError(f"no device named {name!r} in {path}; stored devices: {known}")
    _rewrite(path, lambda tables: tables.pop(name))
    return registry[name] if name in registry else InvalidEntry(name, invalid[name])


def _store_new(spec: DeviceSpec, path: Path | None) -> None:
    """Check the new entry by the readers' own rules (entry_spec), then add it to the file."""
    path = Path(path) if path is not None else default_devices_file()
    entry_spec(spec.name, spec.to_entry(), f"device {spec.name!r}")

    def add(tables: dict[str, Any]) -> None:
        if spec.name in tables:
            registry, _ = read_registry(path)
            what = registry[spec.name].target if spec.name in registry else "an invalid entry"
            raise PayattnError(
                f"a device named {spec.name!r} already exists ({what}); remove it first with "
                f"`payattn devices remove {spec.name}` or choose another name")
        tables[spec.name] = spec.to_entry()

    _rewrite(path, add)


def _rewrite(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    """Apply `change` to the file's [devices] tables and write the whole document back,
    after checking that the text written reads back as exactly that document (so an entry
    payattn cannot reproduce is refused, never lost or altered)."""
    document = _read_document(path)
    tables = dict(_devices_table(document, path))
    change(tables)
    document["devices"] = tables
    text = render_document(document)
    if tomllib.loads(text) != document:
        raise PayattnError(f"{path} holds values payattn cannot write back unchanged (such as nan); "
                           "fix them by hand first")
    write_text_atomic(path, text)


def render_registry(registry: dict[str, DeviceSpec]) -> str:
    """The registry as TOML: one [devices.NAME] table per device, keys in a fixed order."""
    return render_document({"devices": {validate_name(n): s.to_entry() for n, s in registry.items()}})


def write_registry(registry: dict[str, DeviceSpec], path: Path | None = None) -> Path:
    """Write a registry of devices (replacing the file) atomically."""
    path = Path(path) if path is not None else default_devices_file()
    return write_text_atomic(path, render_registry(registry))
