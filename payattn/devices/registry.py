"""The device registry: named SSH and ADB devices kept in a small TOML file.

The file lives in the user's config dir (`$XDG_CONFIG_HOME/payattn/devices.toml`, by default
`~/.config/payattn/devices.toml`) so that `payattn bench --device pi4` works from any checkout.
It is read with tomllib and written by the minimal writer below (string and integer values
only), atomically, so an interrupted `devices add` never leaves a half-written registry.
`local` (this machine) always exists and is never stored.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from payattn.errors import PayattnError

LOCAL = "local"
_RECORD_LOCK = threading.Lock()
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
HOST_PATTERN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")
USER_PATTERN = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
MASK_PATTERN = re.compile(r"^(?:0x)?[0-9A-Fa-f]+$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


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


def parse_ssh_target(target: str) -> tuple[str | None, str, int | None]:
    """Split `[USER@]HOST[:PORT]` (an IPv6 host in brackets) into (user, host, port)."""
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
    usage = "expected USER@HOST or USER@HOST:PORT, e.g. pi@raspberrypi.local:22"
    if user and not USER_PATTERN.match(user):
        raise PayattnError(f"invalid SSH user in {target!r}; {usage}")
    if not host or not HOST_PATTERN.match(host):
        raise PayattnError(f"invalid SSH host in {target!r}; {usage}")
    port: int | None = None
    if port_text or hostport.endswith(":"):
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise PayattnError(f"invalid SSH port in {target!r}: use 1-65535; {usage}")
        port = int(port_text)
    return user or None, host, port


def load_registry(path: Path | None = None) -> dict[str, DeviceSpec]:
    """The stored devices by name (without `local`); a missing file is an empty registry."""
    path = Path(path) if path is not None else default_devices_file()
    if not path.exists():
        return {}
    if not path.is_file():
        raise PayattnError(f"the device registry {path} is not a file; pass a file path to --devices-file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PayattnError(f"cannot read the device registry {path} ({exc.strerror}); check its permissions") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PayattnError(f"cannot read the device registry {path}: {exc}; fix or delete the file") from None
    tables = data.get("devices", {})
    if not isinstance(tables, dict):
        raise PayattnError(f"{path}: 'devices' must be a table of [devices.NAME] entries; fix or delete the file")
    known = {f.name for f in fields(DeviceSpec)} - {"name"}
    specs: dict[str, DeviceSpec] = {}
    for name, entry in tables.items():
        where = f"[devices.{name}] in {path}"
        if not isinstance(entry, dict):
            raise PayattnError(f"{where} is not a table; fix or delete the file")
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
        specs[name] = spec
    return specs


def _check_entry(spec: DeviceSpec, where: str) -> None:
    """Reject a hand-edited entry that could not work, naming the missing or wrong key."""
    for key in ("user", "identity", "known_hosts", "python", "cpu_mask", "host", "serial", "benchmark_model",
                "benchmark_model_version", "benchmark_model_sha256"):
        if getattr(spec, key) is not None and not isinstance(getattr(spec, key), str):
            raise PayattnError(f"{where}: {key} must be a string in quotes")
    if spec.kind == "ssh":
        if not isinstance(spec.host, str) or not HOST_PATTERN.match(spec.host):
            raise PayattnError(f"{where}: an ssh device needs host = \"HOST\" (a name or address)")
        if spec.port is not None and (isinstance(spec.port, bool) or not isinstance(spec.port, int)
                                      or not 0 < spec.port < 65536):
            raise PayattnError(f"{where}: port must be an integer 1-65535 without quotes, e.g. port = 22")
        if spec.user is not None and not USER_PATTERN.match(spec.user):
            raise PayattnError(f"{where}: user {spec.user!r} is not a valid login name (letters, digits, "
                               f"'.', '_', '-', not starting with '-')")
        if spec.python is not None and (not spec.python.strip() or spec.python.startswith("-")):
            raise PayattnError(f"{where}: python must name the device's Python, e.g. python3")
    elif spec.kind == "adb":
        if not isinstance(spec.serial, str) or not spec.serial:
            raise PayattnError(f"{where}: an adb device needs serial = \"SERIAL\" (see `adb devices`)")
        if spec.serial.startswith("-") or any(c.isspace() for c in spec.serial):
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


def list_devices(path: Path | None = None) -> list[DeviceSpec]:
    """`local` first, then the stored devices by name."""
    registry = load_registry(path)
    return [LOCAL_SPEC] + [registry[name] for name in sorted(registry)]


def get_device(name: str, path: Path | None = None) -> DeviceSpec:
    """The device called `name`; an unknown name lists the known ones."""
    if name == LOCAL:
        return LOCAL_SPEC
    registry = load_registry(path)
    if name not in registry:
        known = ", ".join([LOCAL] + sorted(registry))
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
    """Record the prebuilt benchmark_model a phone first ran, so a changed file is noticed."""
    path = Path(path) if path is not None else default_devices_file()
    with _RECORD_LOCK:  # phones bench at once, each on its own thread
        registry = load_registry(path)
        if name not in registry:
            raise PayattnError(f"no device named {name!r} in {path}; add it with `payattn devices add`")
        registry[name] = replace(registry[name], benchmark_model_version=version,
                                 benchmark_model_sha256=sha256)
        write_registry(registry, path)
    return registry[name]


def remove_device(name: str, path: Path | None = None) -> DeviceSpec:
    """Forget the device called `name` and return what it was."""
    if name == LOCAL:
        raise PayattnError("'local' is this machine and cannot be removed")
    path = Path(path) if path is not None else default_devices_file()
    registry = load_registry(path)
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise PayattnError(f"no device named {name!r} in {path}; stored devices: {known}")
    removed = registry.pop(name)
    write_registry(registry, path)
    return removed


def _store_new(spec: DeviceSpec, path: Path | None) -> None:
    path = Path(path) if path is not None else default_devices_file()
    registry = load_registry(path)
    if spec.name in registry:
        raise PayattnError(
            f"a device named {spec.name!r} already exists ({registry[spec.name].target}); "
            f"remove it first with `payattn devices remove {spec.name}` or choose another name"
        )
    registry[spec.name] = spec
    write_registry(registry, path)


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for char in value:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def render_registry(registry: dict[str, DeviceSpec]) -> str:
    """The registry as TOML: one [devices.NAME] table per device, keys in a fixed order."""
    lines = ["# payattn devices: edit with `payattn devices add/remove` (local is built in).", ""]
    for name in sorted(registry):
        lines.append(f"[devices.{validate_name(name)}]")
        for key, value in registry[name].to_entry().items():
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise PayattnError(f"device {name}: {key} must be a string or an integer")
            lines.append(f"{key} = {value if isinstance(value, int) else toml_string(value)}")
        lines.append("")
    return "\n".join(lines)


def write_registry(registry: dict[str, DeviceSpec], path: Path | None = None) -> Path:
    """Write the registry atomically: a temp file in the same folder, then os.replace."""
    path = Path(path) if path is not None else default_devices_file()
    text = render_registry(registry)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".devices-", suffix=".toml", dir=path.parent)
    except OSError as exc:
        raise PayattnError(f"cannot write the device registry {path} ({exc.strerror}); "
                           f"pass a writable --devices-file") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
