"""``amoeba model-info``: parameters, multiply-adds and weight layers of a genome's Flax network.

JSON schema (``--json``): ``{"genome": str, "space": str, "fingerprint": str, "network": {...}, "cells":
int|null, "filters": int|null, "dataset": str, "image_size": int, "num_classes": int, "params": int,
"mult_adds": int, "layers": int}``; ``network`` is the space's standard network with the given overrides
(``cells``/``filters`` repeat its keys of those names); ``mult_adds`` is per image (see ``nets.build``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.errors import UserError
from cli.genome_arg import load_genome
from domain.errors import AmoebaError

DATASETS = ("cifar10", "imagenet")


def model_info(
    genome: Annotated[str, typer.Option(help="named genome (amoebanet-a, nasnet-a, ...), a genome JSON file, or an NB201 arch string")],
    cells: Annotated[int | None, typer.Option("--cells", "-N", help="cells per stack or stage (default: the space's standard network)")] = None,
    filters: Annotated[int | None, typer.Option("--filters", "-F", help="filters of the first stack or stage (default: the space's standard network)")] = None,
    dataset: Annotated[str, typer.Option(help="cifar10 or imagenet (the NASNet stem)")] = "cifar10",
    image_size: Annotated[int | None, typer.Option(help="input resolution (default 32 for cifar10, 224 for imagenet)")] = None,
    num_classes: Annotated[int | None, typer.Option(help="classifier outputs (default 10 for cifar10, 1000 for imagenet)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only")] = False,
) -> None:
    """Parameters, multiply-adds (per image) and weight layers of a genome's network."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if (cells is not None and cells < 1) or (filters is not None and filters < 1):
        raise UserError("--cells and --filters must be positive")
    if num_classes is not None and num_classes < 1:
        raise UserError("--num-classes must be positive")
    import spaces

    parsed = load_genome(genome)
    network = dict(spaces.get(parsed.space).network)
    network.update({k: v for k, v in (("cells", cells), ("filters", filters)) if v is not None})
    # JAX is imported only here, in the command: the rest of the CLI starts without it.
    from nets.build import IMAGE_SIZES, NUM_CLASSES, model_stats

    size = IMAGE_SIZES[dataset] if image_size is None else image_size
    classes = NUM_CLASSES[dataset] if num_classes is None else num_classes
    try:
        stats = model_stats(parsed, network, dataset, image_size=size, num_classes=classes)
    except AmoebaError as exc:
        raise UserError(str(exc)) from None
    doc = {
        "genome": genome, "space": parsed.space, "fingerprint": parsed.fingerprint, "network": network,
        "cells": network.get("cells"), "filters": network.get("filters"), "dataset": dataset, "image_size": size,
        "num_classes": classes, **stats.to_json(),
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    # The network's own sizes (N and F, or the block space's width and depth); input and classes are the dataset's.
    shown = "".join(f", {k}={v}" for k, v in network.items()
                    if k not in ("input_size", "num_classes", "dataset") and v is not None)
    typer.echo(f"{genome} ({parsed.space}{shown}, {dataset} {size}x{size}, {classes} classes)")
    typer.echo(f"  parameters    {stats.params:>16,}  ({stats.params / 1e6:.2f} M)")
    typer.echo(f"  multiply-adds {stats.mult_adds:>16,}  ({stats.mult_adds / 1e9:.2f} B per image)")
    typer.echo(f"  weight layers {stats.layers:>16,}")


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info)
