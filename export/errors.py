"""The exporter's errors: each message is one complete line for the command line."""

from __future__ import annotations

from domain.errors import AmoebaError

#: What a user without the extra is told.
EXTRA_HINT = "install the export extra: pip install 'amoeba-nas[export]'"


class ExportError(AmoebaError, ValueError):
    """The model cannot be exported, read or checked; the message says why."""


class ExportUnavailable(ExportError):
    """TensorFlow or LiteRT (the ``export`` extra) is not installed."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"{missing} is not installed: {EXTRA_HINT}")


class NotTflite(ExportError):
    """The file is not a TFLite flatbuffer."""
