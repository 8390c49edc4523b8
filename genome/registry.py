"""Look-up of search spaces by name, genomes by JSON, and the named reference genomes."""

from __future__ import annotations

import json
from typing import Any

from genome.base import Genome, GenomeError
from genome.nasnet import NASNetSpace
from genome.nb201 import NB201Space
from genome.reference import REFERENCE_CELLS, reference_genome

_SPACES: dict[str, Any] = {"nasnet": NASNetSpace(), "nb201": NB201Space()}


def get_space(name: str) -> Any:
    """The search space called ``name`` (``nasnet`` or ``nb201``)."""
    try:
        return _SPACES[name]
    except KeyError:
        raise GenomeError(f"unknown search space {name!r}; expected one of {', '.join(sorted(_SPACES))}") from None


def parse_genome(data: Any, space: str | None = None) -> Genome:
    """Decode (and validate) a genome from JSON data or a JSON string; ``space`` defaults to ``data['space']``."""
    if isinstance(data, str) and data.lstrip().startswith("{"):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise GenomeError(f"genome is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if space is None:
        if isinstance(data, dict) and isinstance(data.get("space"), str):
            space = data["space"]
        elif isinstance(data, str) and "~" in data:
            space = "nb201"
        else:
            raise GenomeError("genome JSON must name its 'space' (nasnet or nb201)")
    genome: Genome = get_space(space).from_json(data)
    return genome


def named_genomes() -> tuple[str, ...]:
    return tuple(REFERENCE_CELLS)


def load_named_genome(name: str) -> Genome:
    """A published genome by name: ``amoebanet-a`` or ``nasnet-a``."""
    if name not in REFERENCE_CELLS:
        raise GenomeError(f"unknown genome name {name!r}; expected one of {', '.join(REFERENCE_CELLS)}")
    return reference_genome(name)
