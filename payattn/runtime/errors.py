"""The device-side error type.

payattn.runtime must not import payattn.attention (it imports torch), so the runtime raises its
own ValueError subclass; the CLI catches it alongside payattn.errors.PayattnError and prints
the message without a traceback.
"""

from __future__ import annotations


class RuntimeJobError(ValueError):
    """A user-facing benchmark error: its message names the file or setting and the fix."""
