"""``amoeba latency``: simulated Edge TPU latency of a genome (no JAX), of a reference network (traced), or the
block table of the EfficientNet-EdgeTPU block space (``--blocks``, no JAX).

``--blocks [--device D] [--clock C] [--input N] [--json]`` prices, at the block space's stage shapes for an
N x N input (default 224), a regular 3x3 convolution against a depthwise-separable one (3x3 depthwise +
1x1 pointwise) with the same input and output, and each block the space offers (fused and MBConv, at each
kernel and expansion). ``--json`` prints a list of rows ``{"stage": int, "input": [H, W, C], "output": [H,
W, C], "kind": "conv"|"separable"|"fused"|"mbconv", "kernel": int, "expansion": int|null, "macs": int,
"utilization": float, "ms": float}``: ``utilization`` is the MACs over what the 4096 lanes could do in the
cycles the row's layers take, ``ms`` the layers' own time (no invocation cost, no input transfer).

``--tflite FILE [--device D] [--clock C] [--json]`` estimates any TFLite model (an ``amoeba export`` output or
any other int8 model): the flatbuffer is read into the same layer IR (``export.reader``, the ``export``
extra's LiteRT schema; no JAX, no TensorFlow) with the Edge TPU check's split applied; ``--json`` adds
``edgetpu`` (``ops_total``, ``ops_mapped``, ``unmapped``, ...) and ``source`` ``{"tflite", "bytes"}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table as RichTable

from cli.errors import UserError
from cli.genome_arg import load_genome
from domain.errors import AmoebaError
from latency import LatencyReport, estimate
from latency.hardware import CLOCKS_MHZ, PROFILES

MODELS = ("mobilenet_v1", "efficientnet_edgetpu_s", "inception_v4")


def _model_report(name: str, input_size: int | None, device: str, clock: int | None) -> tuple[LatencyReport, dict[str, Any]]:
    # JAX is imported here only: the genome path must work on an orchestrator without it.
    from nets.trace import TraceError, trace_module
    from nets.zoo import ZooError, get

    try:
        entry = get(name)
    except ZooError as exc:
        raise UserError(str(exc)) from None
    size = input_size or entry.input_size
    try:
        graph = trace_module(entry.module, (size, size, 3), name=name)
    except TraceError as exc:
        raise UserError(str(exc)) from None
    return estimate(graph, device=device, clock_mhz=clock), {"model": name, "input": size}


def latency(
    genome: Annotated[str | None, typer.Option(help="named genome (amoebanet-a, nasnet-a, ...), a genome JSON file, or an NB201 arch string")] = None,
    model: Annotated[str | None, typer.Option(help=f"reference network: {', '.join(MODELS)}")] = None,
    tflite: Annotated[Path | None, typer.Option("--tflite", help="a TFLite model file (any int8 .tflite; needs the export extra)")] = None,
    cells: Annotated[int | None, typer.Option("--cells", "-N", help="cells per stack or stage (default: the space's standard network)")] = None,
    filters: Annotated[int | None, typer.Option("--filters", "-F", help="filters of the first stack or stage (default: the space's standard network)")] = None,
    input_size: Annotated[int | None, typer.Option("--input", help="input height = width (default: the space's standard network; the model's own for --model)")] = None,
    classes: Annotated[int | None, typer.Option("--classes", help="number of classes (default: the space's standard network)")] = None,
    device: Annotated[str, typer.Option(help=f"device profile: {', '.join(PROFILES)}")] = "usb3",
    clock: Annotated[int | None, typer.Option(help="Edge TPU clock in MHz: 250 or 500 (default: the profile's, 500)")] = None,
    top: Annotated[int, typer.Option(help="show only the TOP slowest layers in the table (0: all, in order)")] = 0,
    blocks: Annotated[bool, typer.Option("--blocks", help="the block table of the EfficientNet-EdgeTPU block space: regular against depthwise-separable convolutions, fused against MBConv blocks, per stage")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only")] = False,
) -> None:
    """Simulated Edge TPU latency (batch 1) of a genome's network or of a reference network, per layer."""
    if tflite is not None:
        others = {"--genome": genome, "--model": model, "--cells": cells, "--filters": filters, "--input": input_size,
                  "--classes": classes, "--blocks": blocks or None}
        given = [flag for flag, value in others.items() if value is not None]
        if given:
            raise UserError(f"--tflite reads the network from the file: give it no {', '.join(given)}")
        _tflite(tflite, device, clock, top, as_json)
        return
    if blocks and (genome is not None or model is not None):
        raise UserError("--blocks prints the block table: give it no --genome or --model")
    if not blocks and (genome is None) == (model is None):
        raise UserError("give exactly one of --genome or --model (or --blocks for the block table)")
    if model is not None and model not in MODELS:
        raise UserError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if device not in PROFILES:
        raise UserError(f"unknown device {device!r}; expected one of {', '.join(PROFILES)}")
    if clock is not None and clock not in CLOCKS_MHZ:
        raise UserError(f"--clock must be one of {', '.join(map(str, CLOCKS_MHZ))} MHz, got {clock}")
    if top < 0:
        raise UserError("--top must be 0 (all layers) or positive")
    if cells is not None and cells < 1:
        raise UserError(f"--cells: cells (N) must be at least 1, got {cells}")
    if filters is not None and filters < 1:
        raise UserError(f"--filters: filters (F) must be at least 1, got {filters}")
    if input_size is not None and input_size < 8:
        raise UserError(f"--input must be at least 8, got {input_size}")
    if classes is not None and classes < 1:
        raise UserError(f"--classes must be at least 1, got {classes}")
    if blocks:
        if cells is not None or filters is not None or classes is not None or top:
            raise UserError("--blocks takes only --device, --clock, --input and --json")
        _blocks(device, clock, input_size or 224, as_json)
        return
    try:
        if genome is not None:
            import spaces

            g = load_genome(genome)
            space = spaces.get(g.space)
            asked = {"cells": cells, "filters": filters, "input_size": input_size, "num_classes": classes}
            overrides: dict[str, Any] = {k: v for k, v in asked.items() if v is not None}
            network = space.latency_settings(overrides).network_dict()
            report = estimate(space.lower(g, network), device=device, clock_mhz=clock)
            source: dict[str, Any] = {"genome": g.to_json(), "fingerprint": g.fingerprint, "space": g.space,
                                      "network": network, "cells": network.get("cells"),
                                      "filters": network.get("filters"), "input": network.get("input_size"),
                                      "classes": network.get("num_classes")}
        else:
            assert model is not None
            report, source = _model_report(model, input_size, device, clock)
    except AmoebaError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        doc = {"source": source, **report.to_json()}
        typer.echo(json.dumps(doc, indent=2))
        return
    _print(report, source, top)


def _tflite(path: Path, device: str, clock: int | None, top: int, as_json: bool) -> None:
    """``--tflite``: read the file into layer IR (no JAX: only the export extra's LiteRT schema) and estimate it."""
    if device not in PROFILES:
        raise UserError(f"unknown device {device!r}; expected one of {', '.join(PROFILES)}")
    if top < 0:
        raise UserError("--top must be 0 (all layers) or positive")
    from export.reader import read_graph

    try:
        graph, check, tfl = read_graph(path)
        report = estimate(graph, device=device, clock_mhz=clock)
    except AmoebaError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        doc = {"source": {"tflite": str(path), "bytes": tfl.size_bytes}, "edgetpu": check.to_json(), **report.to_json()}
        typer.echo(json.dumps(doc, indent=2))
        return
    _print(report, {"model": f"{path.name} (TFLite, {tfl.size_bytes:,} bytes)"}, top)
    first = check.first_unsupported
    if first is None:
        typer.echo(f"Edge TPU check: all {check.ops_total} operators map to the Edge TPU")
    else:
        counts: dict[str, int] = {}
        for name in check.unmapped:
            counts[name] = counts.get(name, 0) + 1
        typer.echo(f"Edge TPU check: {check.ops_mapped} of {check.ops_total} operators map; the rest fall back to the "
                   f"CPU from operator {first.index} ({first.name}: {first.reason}): "
                   + ", ".join(f"{name} x{n}" for name, n in counts.items()))


def _print(report: LatencyReport, source: dict[str, Any], top: int) -> None:
    # Piped output keeps full layer names instead of rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    rows = list(report.layers)
    if top:
        rows = sorted(rows, key=lambda c: c.ms, reverse=True)[:top]
    table = RichTable(title=f"{report.graph} on {report.device} at {report.clock_mhz} MHz")
    for col in ("layer", "kind", "where", "cycles", "util", "MMACs", "param B", "link B", "ms"):
        table.add_column(col, justify="left" if col in ("layer", "kind", "where") else "right",
                         overflow="fold" if col == "layer" else "ellipsis")
    for c in rows:
        table.add_row(c.name, c.kind, c.where, f"{c.cycles:,.0f}", f"{c.utilization:.1%}" if c.utilization else "-",
                      f"{c.macs / 1e6:.2f}", f"{c.param_bytes:,}", f"{c.bytes_moved:,}", f"{c.ms:.4f}")
    console.print(table)
    what = source.get("model") or f"{source['space']} genome {source['fingerprint']}"
    console.print(
        f"[bold]{what}[/bold]: [bold]{report.latency_ms:.3f} ms[/bold] "
        f"(invoke {report.invoke_ms:.2f}, transfers {report.transfer_ms:.2f}, TPU {report.tpu_ms:.2f}, "
        f"CPU {report.cpu_ms:.2f}); {report.macs / 1e6:,.1f} M MACs, {report.params / 1e6:.3f} M params"
    )
    fit = "fits on chip" if report.fits_on_chip else "does NOT fit on chip"
    console.print(f"parameters: {report.on_chip_param_bytes:,} B cached, {report.streamed_bytes:,} B streamed per "
                  f"inference ({fit}); fallback ops: {', '.join(report.fallback_ops) or 'none'}")


def _blocks(device: str, clock: int | None, input_size: int, as_json: bool) -> None:
    from latency.edgetpu import block_table

    try:
        rows = block_table(device, clock, input_size)
    except AmoebaError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    console = Console() if sys.stdout.isatty() else Console(width=160)
    clock_shown = clock or PROFILES[device].clock_mhz
    table = RichTable(title=f"blocks at the stages' shapes for {input_size}x{input_size} on {device} at {clock_shown} MHz "
                            "(the layers' own time)")
    for col in ("stage", "input", "output", "kind", "kernel", "expansion", "MMACs", "util", "ms"):
        table.add_column(col, justify="left" if col in ("kind", "input", "output") else "right")
    for r in rows:
        table.add_row(str(r.stage), "x".join(map(str, r.input)), "x".join(map(str, r.output)), r.kind, f"{r.kernel}x{r.kernel}",
                      "-" if r.expansion is None else str(r.expansion), f"{r.macs / 1e6:,.1f}", f"{r.utilization:.1%}",
                      f"{r.ms:.4f}")
    console.print(table)
    for stage in sorted({r.stage for r in rows}):
        conv, sep = (next(r for r in rows if r.stage == stage and r.kind == k) for k in ("conv", "separable"))
        faster = "regular" if conv.ms < sep.ms else "separable"
        console.print(f"stage {stage}: the {faster} convolution is faster ({conv.ms:.4f} against {sep.ms:.4f} ms; "
                      f"{conv.macs / sep.macs:.1f}x the MACs at {conv.utilization / sep.utilization:.1f}x the utilization)")


def register(app: typer.Typer) -> None:
    app.command("latency")(latency)
