"""Shared pytest fixtures."""

from sshd_fixture import sshd_server  # noqa: F401  (a real OpenSSH server for the SSH device tests)
