"""``amoeba model-info``: parameters, multiply-adds and weight layers of a genome's Flax network.

JSON schema (``--json``): ``{"genome": str, "space": "nasnet"|"nb201", "fingerprint": str, "cells": int,
"filters": int, "dataset": str, "image_size": int, "num_classes": int, "params": int, "mult_adds": int,
"layers": int}``; ``mult_adds`` is per image; see ``nets.build`` for how they are counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import UserError
from genome import GenomeError, load_named_genome, named_genomes, parse_genome

DATASETS = ("cifar10", "imagenet")


def load_genome_arg(value: str) -> Any:
    """A genome from a published name, a JSON file, or an NB201 arch string."""
    if value in named_genomes():
        return load_named_genome(value)
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read genome file {value}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"genome file {value} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        return parse_genome(data)
    if "~" in value:
        return parse_genome(value, "nb201")
    raise UserError(
        f"--genome {value!r} is neither a named genome ({', '.join(named_genomes())}), a JSON file, "
        "nor an NB201 arch string"
    )


def model_info(
    genome: Annotated[str, typer.Option(help="named genome (amoebanet-a, nasnet-a), a genome JSON file, or an NB201 arch string")],
    cells: Annotated[int, typer.Option("--cells", "-N", help="cells per stack (NB201: per stage)")] = 6,
    filters: Annotated[int, typer.Option("--filters", "-F", help="filters of the first stack (NB201: 16)")] = 32,
    dataset: Annotated[str, typer.Option(help="cifar10 or imagenet (the NASNet stem)")] = "cifar10",
    image_size: Annotated[int | None, typer.Option(help="input resolution (default 32 for cifar10, 224 for imagenet)")] = None,
    num_classes: Annotated[int | None, typer.Option(help="classifier outputs (default 10 for cifar10, 1000 for imagenet)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document only")] = False,
) -> None:
    """Parameters, multiply-adds (per image) and weight layers of a genome's network."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if cells < 1 or filters < 1:
        raise UserError("--cells and --filters must be positive")
    if num_classes is not None and num_classes < 1:
        raise UserError("--num-classes must be positive")
    parsed = load_genome_arg(genome)
    # JAX is imported only here: the rest of the CLI starts without it.
    from nets.build import IMAGE_SIZES, NUM_CLASSES, ModelConfigError, model_stats

    size = IMAGE_SIZES[dataset] if image_size is None else image_size
    classes = NUM_CLASSES[dataset] if num_classes is None else num_classes
    try:
        stats = model_stats(parsed, cells, filters, dataset, image_size=size, num_classes=classes)
    except (ModelConfigError, GenomeError) as exc:
        raise UserError(str(exc)) from None
    doc = {
        "genome": genome, "space": parsed.space, "fingerprint": parsed.fingerprint, "cells": cells,
        "filters": filters, "dataset": dataset, "image_size": size, "num_classes": classes, **stats.to_json(),
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{genome} ({parsed.space}, N={cells}, F={filters}, {dataset} {size}x{size}, {classes} classes)")
    typer.echo(f"  parameters    {stats.params:>16,}  ({stats.params / 1e6:.2f} M)")
    typer.echo(f"  multiply-adds {stats.mult_adds:>16,}  ({stats.mult_adds / 1e9:.2f} B per image)")
    typer.echo(f"  weight layers {stats.layers:>16,}")


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info)
