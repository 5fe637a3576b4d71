"""A local HTTPS server on 127.0.0.1 standing in for LiteRT's binaries bucket.

`binaries_server` makes a throw-away self-signed certificate for 127.0.0.1 with the openssl CLI
(the tests pass it to payattn as the CA file, as a user behind a private mirror would), and
serves whatever a test puts in `server.files[path]`, in the manner `server.modes[path]` names:
`ok`, `truncated` (announces every byte, sends half, hangs up), `stall` (headers, then silence
until the test ends) or `redirect-http` (a 302 to plain HTTP). It records each path asked for,
so a test can tell that nothing was fetched. Nothing here reaches beyond the loopback.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LITERT_PATH = "/litert/binaries/2.3.0/android_arm64/benchmark_model"


def elf(machine: int = 0xB7, size: int = 300_000, elf_class: int = 2, salt: bytes = b"") -> bytes:
    """A stand-in executable: a 64-bit little-endian ELF header for `machine`, then filler."""
    header = b"\x7fELF" + bytes([elf_class, 1, 1]) + bytes(9) + (3).to_bytes(2, "little") + \
        machine.to_bytes(2, "little")
    return header + salt + bytes(size - len(header) - len(salt))


@dataclass
class BinariesServer:
    url: str  # https://127.0.0.1:PORT
    ca_file: Path
    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: install it (apt-get install openssl) to run the download tests")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def binaries_server(tmp_path):
    """A running HTTPS server on 127.0.0.1 (see the module docstring); stopped after the test."""
    cert, key = make_certificate(tmp_path)
    state = BinariesServer(url="", ca_file=cert)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append(self.path)
            body, mode = state.files.get(self.path), state.modes.get(self.path, "ok")
            if mode == "redirect-http":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9" + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "stall":
                self.wfile.flush()
                state.release.wait(30)
                return
            self.wfile.write(body[: len(body) // 2] if mode == "truncated" else body)
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
