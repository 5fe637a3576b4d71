"""The user-facing error type, in a module of its own so that light modules need not import torch."""


class PayattnError(ValueError):
    """A user-facing error: its message names the problem and the fix."""
