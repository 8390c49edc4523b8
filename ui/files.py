"""Files the views write: each through a temporary file renamed over it, and PNG figures that way."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100  # an 8 x 5 inch figure is 800 x 500 pixels


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file renamed over it: a crash leaves the old file or the new one."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with (tmp.open(mode) if "b" in mode else tmp.open(mode, newline="", encoding="utf-8")) as fh:
            yield fh
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def save_png(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` on the Agg canvas (no pyplot, no display) into ``path``, atomically."""
    # Imported here: the CSV and JSON exports write through this module without loading matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(path)
    FigureCanvasAgg(fig)
    with atomic_write(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return out
