"""``amoeba scale``: compound scaling of a genome of the EfficientNet-EdgeTPU block space (Tan & Le 2019).

``amoeba scale --genome NAME|FILE (--to S|M|L | --depth D --width W --resolution R) [--device D] [--clock C]
[--classes K] [--json]`` gives the genome's stages compound-scaling coefficients (layers = ceil(D x layers),
filters x W rounded as EfficientNet's ``round_filters``, input R x R; ``M`` and ``L`` are
EfficientNet-EdgeTPU's own: depth 1.1 / width 1.0 / 240 px and depth 1.4 / width 1.2 / 300 px) and prints
the scaled network's parameters, multiply-adds and simulated latency at R on the device (default usb3).
Coefficients are relative to the genome's searched stages (a scaled genome given here is rescaled from its
stages, not compounded). Without JAX: the counts are the latency IR's, which equal the Flax model's.

JSON schema (``--json``): ``{"genome": {...the scaled genome's JSON...}, "fingerprint": str, "summary": str,
"depth": float, "width": float, "input": int, "num_classes": int, "params": int, "mult_adds": int,
"latency_ms": float, "fits_on_chip": bool, "device": str, "clock_mhz": int}``. The scaled genome is an
ordinary genome: save ``genome`` to a file and give it to ``amoeba latency --genome FILE --input R``,
``model-info``, training.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import typer

from cli.errors import UserError
from cli.genome_arg import load_genome
from domain.errors import AmoebaError
from genome.edgetpu import COMPOUND, SPACE_NAME, EdgeTPUGenome, scale_genome
from latency.hardware import CLOCKS_MHZ, PROFILES

PRESETS = ("S", "M", "L")


def _coefficient(name: str, value: float | None, default: float) -> float:
    if value is None:
        return default
    if not (math.isfinite(value) and 0 < value <= 8):
        raise UserError(f"--{name} must be a number in (0, 8], got {value}")
    return value


def scale(
    genome: Annotated[str, typer.Option(help="a genome of the EfficientNet-EdgeTPU block space: a name (efficientnet-edgetpu-s) or a genome JSON file")],
    to: Annotated[str | None, typer.Option("--to", help="EfficientNet-EdgeTPU's coefficients: S, M (depth 1.1, 240 px) or L (depth 1.4, width 1.2, 300 px)")] = None,
    depth: Annotated[float | None, typer.Option(help="depth coefficient D: layers = ceil(D x layers) (default 1)")] = None,
    width: Annotated[float | None, typer.Option(help="width coefficient W: filters x W, rounded to a multiple of 8 (default 1)")] = None,
    resolution: Annotated[int | None, typer.Option(help="input resolution R (default 224)")] = None,
    classes: Annotated[int, typer.Option("--classes", help="classifier outputs")] = 1000,
    device: Annotated[str, typer.Option(help=f"device profile: {', '.join(PROFILES)}")] = "usb3",
    clock: Annotated[int | None, typer.Option(help="Edge TPU clock in MHz: 250 or 500 (default: the profile's, 500)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only")] = False,
) -> None:
    """Compound-scale a block-space genome (EfficientNet's depth, width and resolution) and price it."""
    manual = depth is not None or width is not None or resolution is not None
    if (to is None) == (not manual):
        raise UserError("give --to S|M|L or some of --depth, --width and --resolution (not both)")
    if to is not None and to.upper() not in PRESETS:
        raise UserError(f"--to must be one of {', '.join(PRESETS)}, got {to[:60]!r}")
    if device not in PROFILES:
        raise UserError(f"unknown device {device[:60]!r}; expected one of {', '.join(PROFILES)}")
    if clock is not None and clock not in CLOCKS_MHZ:
        raise UserError(f"--clock must be one of {', '.join(map(str, CLOCKS_MHZ))} MHz, got {clock}")
    if resolution is not None and not 8 <= resolution <= 4096:
        raise UserError(f"--resolution must be between 8 and 4096, got {resolution}")
    if not 1 <= classes <= 1_000_000:
        raise UserError(f"--classes must be between 1 and 1000000, got {classes}")
    if to is not None:
        c = COMPOUND[to.upper()]
        d, w, r = c.depth, c.width, c.resolution
    else:
        d, w, r = _coefficient("depth", depth, 1.0), _coefficient("width", width, 1.0), resolution or 224
    import spaces

    parsed = load_genome(genome)
    if not isinstance(parsed, EdgeTPUGenome):
        raise UserError(f"amoeba scale scales genomes of the {SPACE_NAME} space (EfficientNet's compound scaling); "
                        f"{genome[:60]!r} is a {parsed.space} genome")
    try:
        scaled = scale_genome(parsed, d, w)
        space = spaces.get(scaled.space)
        settings = space.latency_settings({"input_size": r, "num_classes": classes, "device": device,
                                           "clock_mhz": clock})
        graph = space.lower(scaled, settings.network_dict())
        report = space.estimate(scaled, settings)
    except AmoebaError as exc:
        raise UserError(str(exc)) from None
    doc: dict[str, Any] = {
        "genome": scaled.to_json(), "fingerprint": scaled.fingerprint, "summary": scaled.summary(),
        "depth": scaled.depth, "width": scaled.width, "input": r, "num_classes": classes,
        "params": graph.total_params(), "mult_adds": graph.total_macs(), "latency_ms": round(report.latency_ms, 4),
        "fits_on_chip": report.fits_on_chip, "device": report.device, "clock_mhz": report.clock_mhz,
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{genome} scaled by depth {scaled.depth:g}, width {scaled.width:g}, {r}x{r} input, {classes} classes")
    typer.echo(f"  {scaled.summary()}")
    typer.echo(f"  parameters    {doc['params']:>16,}  ({doc['params'] / 1e6:.2f} M)")
    typer.echo(f"  multiply-adds {doc['mult_adds']:>16,}  ({doc['mult_adds'] / 1e9:.2f} B per image)")
    fit = "fits on chip" if report.fits_on_chip else "does NOT fit on chip"
    typer.echo(f"  latency       {report.latency_ms:>13.3f} ms  ({report.device} at {report.clock_mhz} MHz; {fit})")
    typer.echo(f"  genome        {json.dumps(scaled.to_json(), sort_keys=True, separators=(',', ':'))}")


def register(app: typer.Typer) -> None:
    app.command("scale")(scale)
