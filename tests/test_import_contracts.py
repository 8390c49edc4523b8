"""What import-linter cannot see: JAX imported only inside the commands that train or trace, never when
the command line, the server or the client starts (the contracts in pyproject.toml cover the rest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("jax", "flax", "optax", "nets")

PROBE = """
import sys
{imports}
loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print("LOADED=" + ",".join(loaded))
"""


@pytest.mark.parametrize("imports", [
    "import cli.main\ncli.main._register()\ntry:\n    cli.main.main(['--help'])\nexcept SystemExit:\n    pass",
    "import orchestrator.server, orchestrator.service, orchestrator.readmodel",
    "import amoeba",
    "import worker.loop, worker.evaluators, worker.table",
])
def test_starting_the_command_line_server_or_client_imports_no_jax(imports: str) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports, heavy=HEAVY)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LOADED=")][-1]
    assert line == "LOADED=", f"{imports!r} imported {line[len('LOADED='):]}"
