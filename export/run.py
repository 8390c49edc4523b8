"""``export_individual``: what ``amoeba export --format tflite-int8`` runs for one trained individual, and the
lines it prints.

Steps: the int8 model (``export.tflite.export_int8``, calibrated on the representative training images)
is written to ``out_path``; the Edge TPU check reads it back (``export.edgetpu``), the simulator estimates
its latency from the file itself (``export.reader``); the float model is converted too, and both are run
by the LiteRT interpreter on the test split (``export.evaluate``).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from export.data import ExportData
from export.edgetpu import EdgeTpuReport, check, compile_command
from export.errors import ExportError
from export.evaluate import accuracy, input_quantization
from export.flatbuf import read_tflite
from export.reader import tflite_graph
from export.tflite import convert, export_int8
from genome.base import Genome
from latency import estimate


def _write(path: Path, data: bytes) -> None:
    """Write atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_individual(genome: Genome, network: Mapping[str, Any], variables: Mapping[str, Any], data: ExportData,
                      out_path: str | Path, device: str = "usb3", *, clock_mhz: int | None = None,
                      edgetpu: bool = True) -> dict[str, Any]:
    """Export ``genome``'s trained network to a full-int8 TFLite file at ``out_path`` and report on it.

    ``network`` is the network it was trained with (e.g. ``{"cells": 1, "filters": 8}``), ``variables``
    its trained ``params`` and ``batch_stats``; ``data`` holds the representative and test images at the
    training image size. Returns the ``--json`` document: ``out``, ``bytes``, ``float_accuracy``,
    ``int8_accuracy``, ``ops_total``, ``ops_mapped``, ``unmapped`` (operator names, in execution order),
    ``latency_ms`` (simulated on ``device``), and ``device``, ``test_examples``,
    ``representative_examples``, ``all_quantized``, ``first_unsupported``, ``input`` (the input
    quantization) and ``compile_command``. ``edgetpu=False`` exports the training form of the network
    (strided slices, SUM: for comparison; see ``nets.layers.edgetpu_form``).
    """
    out = Path(out_path)
    if out.suffix != ".tflite":
        raise ExportError(f"the output file must end in .tflite, got {out}")
    int8 = export_int8(genome, network, variables, data.representative, data.num_classes, data.dataset, edgetpu=edgetpu)
    _write(out, int8)
    model = read_tflite(int8, name=out.stem)
    report = check(model)
    latency = estimate(tflite_graph(model, report), device=device, clock_mhz=clock_mhz, layers=False)
    floating = convert(genome, network, variables, num_classes=data.num_classes, dataset=data.dataset,
                       input_size=data.input_size, representative_images=None, edgetpu=edgetpu)
    float_accuracy = accuracy(floating, data.test_images, data.test_labels)
    int8_accuracy = accuracy(int8, data.test_images, data.test_labels)
    first = report.first_unsupported
    return {
        "out": str(out), "bytes": len(int8), "float_accuracy": float_accuracy, "int8_accuracy": int8_accuracy,
        "ops_total": report.ops_total, "ops_mapped": report.ops_mapped, "unmapped": list(report.unmapped),
        "latency_ms": round(latency.latency_ms, 4), "device": latency.device,
        "test_examples": len(data.test_labels), "representative_examples": len(data.representative),
        "all_quantized": report.all_quantized,
        "first_unsupported": None if first is None else {"index": first.index, "op": first.name, "reason": first.reason},
        "input": input_quantization(int8).to_json(), "compile_command": compile_command(str(out)),
    }


def unmapped_summary(report: EdgeTpuReport) -> list[str]:
    """Lines naming the operators that would fall back to the CPU (by name, with counts) and why."""
    first = report.first_unsupported
    if first is None:
        return [f"Edge TPU check: all {report.ops_total} operators map to the Edge TPU"]
    counts = Counter(report.unmapped)
    lines = [f"Edge TPU check: {report.ops_mapped} of {report.ops_total} operators map; "
             f"{report.ops_total - report.ops_mapped} fall back to the CPU",
             f"  first unsupported: operator {first.index} {first.name}: {first.reason}",
             "  falling back: " + ", ".join(f"{name} x{n}" for name, n in counts.most_common())]
    return lines


def report_lines(doc: Mapping[str, Any], report: EdgeTpuReport | None = None) -> list[str]:
    """The human-readable report of an ``export_individual`` document (``report``: the check, for details)."""
    lines = [f"wrote {doc['out']} ({doc['bytes']:,} bytes, full int8: "
             f"{'yes' if doc['all_quantized'] else 'NO'})"]
    if report is not None:
        lines += unmapped_summary(report)
    else:
        lines.append(f"Edge TPU check: {doc['ops_mapped']} of {doc['ops_total']} operators map"
                     + (f"; falling back: {', '.join(dict.fromkeys(doc['unmapped']))}" if doc["unmapped"] else ""))
    lines += [
        f"accuracy on {doc['test_examples']:,} test images (LiteRT): float {doc['float_accuracy']:.4f}, "
        f"int8 {doc['int8_accuracy']:.4f}",
        f"simulated Edge TPU latency ({doc['device']}): {doc['latency_ms']:.3f} ms",
        "compile it for the Edge TPU (edgetpu_compiler is not installable here; run this where it is):",
        f"  {doc['compile_command']}",
    ]
    return lines
