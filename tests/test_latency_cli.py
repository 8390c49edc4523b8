"""``amoeba latency``: genomes without JAX, reference models, the JSON schema, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import spaces

pytestmark = pytest.mark.e2e


def amoeba(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_genome_json_schema_and_the_genome_path_never_imports_jax(tmp_path: Path) -> None:
    genome_file = tmp_path / "g.json"
    genome_file.write_text(json.dumps(spaces.named_genome("nasnet-a").to_json()))
    script = (
        "import sys, json, io, contextlib, typer\n"
        "from cli import latency\n"
        "app = typer.Typer(); latency.register(app)\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    app(['--genome', {str(genome_file)!r}, '--cells', '2', '--filters', '8', '--json'], standalone_mode=False)\n"
        "doc = json.loads(out.getvalue())\n"
        "print(json.dumps({'jax': 'jax' in sys.modules, 'doc': doc}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["jax"] is False
    doc = result["doc"]
    for key in ("latency_ms", "fits_on_chip", "on_chip_param_bytes", "streamed_bytes", "layers", "device",
                "fallback_ops", "clock_mhz", "breakdown_ms", "source"):
        assert key in doc
    assert doc["device"] == "usb3" and doc["source"]["cells"] == 2 and doc["source"]["space"] == "nasnet"
    # --json names the whole network: the space's standard one with the given keys overridden.
    assert doc["source"]["network"] == {**spaces.get("nasnet").network, "cells": 2, "filters": 8}
    assert doc["source"]["filters"] == 8 and (doc["source"]["input"], doc["source"]["classes"]) == (32, 10)
    layer = doc["layers"][0]
    assert set(layer) >= {"name", "kind", "cycles", "utilization", "bytes_moved", "where"}
    assert doc["latency_ms"] > sum(x["ms"] for x in doc["layers"]) > 0


def test_model_path_and_table() -> None:
    proc = amoeba("latency", "--model", "mobilenet_v1", "--device", "usb2", "--clock", "250", "--top", "3")
    assert proc.returncode == 0, proc.stderr
    assert "mobilenet_v1" in proc.stdout and "ms" in proc.stdout and "fits on chip" in proc.stdout
    nb = amoeba("latency", "--genome", "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|",
                "--json")
    assert nb.returncode == 0, nb.stderr
    source = json.loads(nb.stdout)["source"]
    assert source["space"] == "nb201" and (source["cells"], source["filters"]) == (5, 16)
    assert source["network"] == {"cells": 5, "filters": 16, "input_size": 32, "num_classes": 10}


def test_a_genome_defaults_to_its_space_standard_network() -> None:
    # NASNet: the paper's search child N = 3, F = 24 (no longer 6 x 36); -N/-F pick others.
    proc = amoeba("latency", "--genome", "amoebanet-a", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    standard = {"cells": 3, "filters": 24, "input_size": 32, "num_classes": 10, "dataset": None}
    assert doc["source"]["network"] == standard == dict(spaces.get("nasnet").network)
    assert (doc["source"]["cells"], doc["source"]["filters"], doc["source"]["input"]) == (3, 24, 32)
    expected = spaces.get("nasnet").estimate(spaces.named_genome("amoebanet-a"),
                                             spaces.get("nasnet").latency_settings(), layers=True)
    assert doc["latency_ms"] == round(expected.latency_ms, 4)
    assert len(doc["layers"]) == len(expected.layers)
    wide = amoeba("latency", "--genome", "amoebanet-a", "-N", "6", "-F", "36", "--classes", "100", "--json")
    assert wide.returncode == 0, wide.stderr
    wide_doc = json.loads(wide.stdout)
    assert wide_doc["source"]["network"] == {**standard, "cells": 6, "filters": 36, "num_classes": 100}
    assert wide_doc["latency_ms"] > doc["latency_ms"]


ERROR_CASES = [
    ((), "exactly one of --genome or --model"),
    (("--genome", "amoebanet-a", "--model", "mobilenet_v1"), "exactly one"),
    (("--genome", "no-such-genome"), "neither a named genome"),
    (("--genome", "amoebanet-a", "--device", "usb4"), "unknown device"),
    (("--genome", "amoebanet-a", "--clock", "300"), "--clock"),
    (("--genome", "amoebanet-a", "--cells", "0"), "cells (N) must be at least 1"),
    (("--genome", "amoebanet-a", "--filters", "0"), "filters (F) must be at least 1"),
    (("--genome", "amoebanet-a", "--classes", "0"), "--classes must be at least 1"),
    (("--genome", "amoebanet-a", "--input", "4"), "--input must be at least 8"),
    (("--genome", '{"space": "nasnet"}'), "missing the normal cell"),
    (("--genome", "amoebanet-a", "--top", "-1"), "--top"),
    (("--model", "resnet50"), "unknown model"),
]


def test_errors_are_one_line() -> None:
    # One interpreter runs every case through the real entry point (a process per case is slow).
    script = (
        "import sys, io, json, contextlib\n"
        "from cli.main import main\n"
        "results = []\n"
        f"for args in {[list(a) for a, _ in ERROR_CASES]!r}:\n"
        "    err, out = io.StringIO(), io.StringIO()\n"
        "    code = 0\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(['latency', *args])\n"
        "        except SystemExit as exc:\n"
        "            code = exc.code\n"
        "    results.append([code, err.getvalue(), out.getvalue()])\n"
        "print(json.dumps(results))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for (args, text), (code, err, _out) in zip(ERROR_CASES, json.loads(proc.stdout), strict=True):
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("amoeba: error:") and text in lines[0], (args, err)
