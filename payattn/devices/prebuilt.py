"""LiteRT's prebuilt Android `benchmark_model`, fetched once per LiteRT version and ABI.

Google's LiteRT CLI (`litert benchmark --android`) takes its phone binaries from one fixed
place, `https://storage.googleapis.com/litert/binaries/<ai-edge-litert version>/android_arm64/`
(litert_cli/core/constants.py, LITERT_BINARIES_BASE_URL; android_utils.find_android_binary),
and so does payattn, for the version constraints.txt pins. The file is checked before it is
ever pushed to a phone: HTTPS only (redirects too), a size bound, a deadline on a server that
stalls, all of it or nothing (a short read is refused), and an ELF executable for the phone's
machine. It lands in `$XDG_CACHE_HOME/payattn/benchmark_model/<version>/<abi>/` through a temp
file and os.replace, so an interrupted fetch never leaves a half file in the cache; the temp
file is named `.benchmark_model.payattn-PID-…` and a killed fetch's is removed by the next one.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from payattn.errors import PayattnError
from payattn.files import TEMP_TAG, pid_alive
from payattn.runtime.artifacts import sha256_file

# ai-edge-litert as constraints.txt pins it (tests/test_prebuilt.py keeps the two equal).
LITERT_VERSION = "2.3.0"
BASE_URL = "https://storage.googleapis.com/litert/binaries"
URL_ENV = "PAYATTN_LITERT_BINARIES_URL"
NAME = "benchmark_model"
# Android ABI -> (LiteRT's folder for it, the ELF e_machine its binaries carry). LiteRT
# publishes android_arm64 only; other ABIs need a binary of the user's own.
PREBUILT = {"arm64-v8a": ("android_arm64", 0xB7)}
BITS32 = ("armeabi-v7a", "armeabi", "x86")
MAX_BYTES = 256 * 2**20
CHUNK = 64 * 1024

Progress = Callable[[int, Optional[int]], None]  # (bytes so far, total or None)


@dataclass(frozen=True)
class FetchSettings:
    """Where and how to fetch: base URL (None: $PAYATTN_LITERT_BINARIES_URL, else Google's),
    a CA file to trust beside the system's, never downloading (offline), the cache root (None:
    the user's cache dir), how long the server may send nothing, the whole fetch's deadline,
    the size bound, and a progress callback."""

    base_url: Optional[str] = None
    ca_file: Optional[Path] = None
    offline: bool = False
    cache_dir: Optional[Path] = None
    stall_seconds: float = 30.0
    deadline_seconds: float = 900.0
    max_bytes: int = MAX_BYTES
    progress: Optional[Progress] = None


@dataclass(frozen=True)
class Prebuilt:
    """A checked benchmark_model in the cache."""

    path: Path
    sha256: str
    version: str
    abi: str
    url: str


def base_url(settings: FetchSettings) -> str:
    return (settings.base_url or os.environ.get(URL_ENV) or BASE_URL).rstrip("/")


def cache_path(abi: str, settings: FetchSettings) -> Path:
    """`<cache>/payattn/benchmark_model/<version>/<abi>/benchmark_model`."""
    root = settings.cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "payattn"
    return Path(root) / NAME / LITERT_VERSION / abi / NAME


def prebuilt_url(abi: str, settings: FetchSettings) -> str:
    return f"{base_url(settings)}/{LITERT_VERSION}/{PREBUILT[abi][0]}/{NAME}"


def check_abi(abi: str) -> None:
    """Refuse, in one line naming --benchmark-model, an ABI LiteRT publishes no binary for."""
    if abi in PREBUILT:
        return
    what = "a 32-bit" if abi in BITS32 else "an"
    raise PayattnError(f"the phone's ABI is {abi}, {what} ABI LiteRT publishes no prebuilt "
                       f"benchmark_model for (only arm64-v8a); re-add the device with "
                       f"--benchmark-model FILE built for {abi}")


def check_elf(path: Path, abi: str, what: str) -> None:
    """An executable for the phone: ELF magic, 64-bit, little-endian, the ABI's machine."""
    with open(path, "rb") as stream:
        header = stream.read(20)
    if not header:
        raise PayattnError(f"{what} is empty; delete {path} and fetch it again")
    if header[:4] != b"\x7fELF" or len(header) < 20:
        raise PayattnError(f"{what} is not an executable (no ELF header: {header[:8]!r}); "
                           f"check the URL (--benchmark-url) and delete {path} if it is cached")
    machine = int.from_bytes(header[18:20], "little")
    if header[4] != 2 or header[5] != 1 or machine != PREBUILT[abi][1]:
        raise PayattnError(f"{what} is not built for {abi} (ELF class {header[4]}, machine "
                           f"{machine:#x}); check the URL (--benchmark-url)")


def ensure_benchmark_model(abi: str, settings: FetchSettings = FetchSettings(),
                           log: Callable[[str], None] = lambda _: None) -> Prebuilt:
    """The cached benchmark_model for `abi`, fetched first if absent (unless offline)."""
    check_abi(abi)
    path, url = cache_path(abi, settings), prebuilt_url(abi, settings)
    if not path.is_file():
        if settings.offline:
            raise PayattnError(f"--offline: no benchmark_model for LiteRT {LITERT_VERSION} {abi} is "
                               f"cached; download {url} to {path} (or pass --benchmark-model FILE)")
        log(f"fetching LiteRT {LITERT_VERSION} benchmark_model for {abi} from {url}")
        download(url, path, abi, settings)
    check_elf(path, abi, f"the cached benchmark_model {path}")
    return Prebuilt(path=path, sha256=sha256_file(path), version=LITERT_VERSION, abi=abi, url=url)


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).scheme != "https":
            raise PayattnError(f"{req.full_url} redirects to {newurl}, which is not HTTPS; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def download(url: str, path: Path, abi: str, settings: FetchSettings) -> None:
    """Fetch `url` to `path` atomically; any failure leaves nothing at `path`."""
    if urlsplit(url).scheme != "https":
        raise PayattnError(f"refusing to fetch {url}: only https:// URLs are fetched "
                           f"(fix --benchmark-url or ${URL_ENV})")
    try:
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise PayattnError(f"cannot read the CA file {settings.ca_file} ({exc}); pass a PEM file "
                           "to --ca-file") from None
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects())
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_killed_fetches(path.parent)
    handle, tmp = tempfile.mkstemp(prefix=f".{NAME}.{TEMP_TAG}-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            _stream(opener, url, out, settings)
        check_elf(Path(tmp), abi, f"the file at {url}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove_killed_fetches(folder: Path) -> list[Path]:
    """Remove the temp files of fetches whose process is gone (killed mid-download)."""
    removed = []
    for entry in folder.glob(f".{NAME}.{TEMP_TAG}-*-*"):
        pid = entry.name.split("-")[1]
        if pid.isdigit() and entry.is_file() and not pid_alive(int(pid)):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _stream(opener: urllib.request.OpenerDirector, url: str, out, settings: FetchSettings) -> None:
    deadline = time.monotonic() + settings.deadline_seconds
    fix = "check the network or the URL, or download it yourself and pass --benchmark-model FILE"
    try:
        with opener.open(urllib.request.Request(url), timeout=settings.stall_seconds) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > settings.max_bytes:
                raise PayattnError(f"{url} is {total} bytes, over the {settings.max_bytes} bytes "
                                   f"a benchmark_model may be; refused ({fix})")
            done = 0
            while chunk := response.read(CHUNK):
                done += len(chunk)
                if done > settings.max_bytes:
                    raise PayattnError(f"{url} sent over {settings.max_bytes} bytes; refused ({fix})")
                if time.monotonic() > deadline:
                    raise PayattnError(f"fetching {url} took over {settings.deadline_seconds:.0f} s; "
                                       f"stopped ({fix})")
                out.write(chunk)
                if settings.progress:
                    settings.progress(done, total)
            if total is not None and done != total:
                raise http.client.IncompleteRead(b"", total - done)
    except http.client.IncompleteRead:
        raise PayattnError(f"the download of {url} was cut short; nothing was cached ({fix})") from None
    except (TimeoutError, socket.timeout):
        raise PayattnError(f"{url} sent nothing for {settings.stall_seconds:g} s; stopped, nothing "
                           f"was cached ({fix})") from None
    except urllib.error.HTTPError as exc:
        raise PayattnError(f"{url} answered HTTP {exc.code} ({exc.reason}): no benchmark_model for "
                           f"LiteRT {LITERT_VERSION} there ({fix})") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise PayattnError(f"the certificate of {urlsplit(url).hostname} is not trusted "
                               f"({reason.verify_message}); pass its CA with --ca-file PEM") from None
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise PayattnError(f"{url} did not answer within {settings.stall_seconds:g} s ({fix})") from None
        raise PayattnError(f"cannot fetch {url}: {reason} ({fix})") from None
    except OSError as exc:  # a reset connection, a full disk
        raise PayattnError(f"fetching {url} failed: {exc} ({fix})") from None
