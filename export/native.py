"""Keep the native libraries' logging (TensorFlow's and LiteRT's C++ code writes straight to file
descriptor 2: absl start-up notes, oneDNN and XNNPACK banners, the converter's progress) and Python
warnings off the terminal while they run; their errors still arrive as exceptions."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
