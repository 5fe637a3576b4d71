"""Connecting a sweep to a Ray cluster: only to the address given, within a deadline.

Ray's own `ray.init(address=...)` waits for minutes when something else answers on the port,
cannot be interrupted while it waits, and turns a loopback address into the host's interface
address. So first, with a deadline of PROBE_SECONDS, the address is checked to speak gRPC
(Ray's GCS and Ray Client servers do; an HTTP or SSH server does not): the HTTP/2 preface is
sent and the server must answer with a SETTINGS frame. For a loopback address Ray is kept on
loopback. Then `ray.init` runs in a thread while this one waits, so Ctrl-C and SIGTERM still
end the wait at once, and CONNECT_SECONDS bounds it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from typing import Any

from payattn.errors import PayattnError

PROBE_SECONDS = 5.0
CONNECT_SECONDS = 60.0
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
SETTINGS_FRAME = 4
FIX = "start one with `ray start --head` and give the address it prints (HOST:6379 by default)"


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of HOST:PORT, [IPv6]:PORT or ray://HOST:PORT; None for `auto`."""
    if address == "auto":
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PayattnError(f"--ray {address!r} is not HOST:PORT, ray://HOST:PORT or auto; {FIX}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def probe(address: str, seconds: float = PROBE_SECONDS) -> None:
    """Fail with one line unless a gRPC server answers at `address` within `seconds`."""
    target = host_port(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=seconds) as sock:
            sock.settimeout(seconds)
            sock.sendall(HTTP2_PREFACE)
            answer = _read(sock, 9, time.monotonic() + seconds)
    except socket.timeout:
        raise PayattnError(f"the Ray cluster at {address!r} did not answer within {seconds:.0f} s; "
                           f"check the address, or {FIX}") from None
    except OSError as exc:
        raise PayattnError(f"cannot connect to the Ray cluster at {address!r} "
                           f"({exc.strerror or exc}); {FIX}") from None
    if len(answer) < 9 or answer[3] != SETTINGS_FRAME:
        seen = answer.decode("ascii", "replace").split("\r")[0][:40] or "nothing"
        raise PayattnError(f"{address!r} answers, but not as a Ray cluster (no gRPC; it said "
                           f"{seen!r}); give the address of the Ray head, or {FIX}")


def _read(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size and time.monotonic() < deadline:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def keep_on_loopback(ray: Any) -> None:
    """A loopback address stays loopback: Ray would otherwise swap 127.0.0.1 for the host's
    interface address, for the cluster's address and for this driver's own."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by Ray's processes at start
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER"):
        constants.ENABLE_RAY_CLUSTER = False  # read by ray.init in this process


def connect(ray: Any, address: str, seconds: float = CONNECT_SECONDS) -> None:
    """`ray.init` to `address`, waited for in this thread so a signal ends the wait, and at
    most `seconds`; its failure is one line naming the address and the fix."""
    target = host_port(address)
    if target is not None and is_loopback(target[0]):
        keep_on_loopback(ray)
    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            outcome["error"] = None
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=init, name="payattn-ray-connect", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise PayattnError(f"the Ray cluster at {address!r} did not accept this driver within "
                           f"{seconds:.0f} s; check that it runs the same Ray version, or {FIX}")
    error = outcome.get("error")
    if error is not None:
        first = (str(error).splitlines() or [""])[0][:200]
        raise PayattnError(f"cannot connect to the Ray cluster at {address!r} "
                           f"({type(error).__name__}: {first}); {FIX}")
