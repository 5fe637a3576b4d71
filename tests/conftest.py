"""Shared pytest fixtures."""

from sshd_fixture import sshd_server  # noqa: F401  (a real OpenSSH server for the SSH device tests)
from https_fixture import binaries_server  # noqa: F401  (an HTTPS server on 127.0.0.1 for the download tests)

import pytest


@pytest.fixture(autouse=True)
def no_binary_downloads(monkeypatch):
    """No test fetches LiteRT's benchmark_model from the network: a test that forgot to point
    payattn at the local server meets a closed loopback port instead of Google's bucket."""
    monkeypatch.setenv("PAYATTN_LITERT_BINARIES_URL", "https://127.0.0.1:9/tests-download-nothing")
