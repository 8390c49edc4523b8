"""The Large-Scale Evolution space as a registry entry (Real et al. 2017), with its weight-inheritance hooks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from genome.base import Genome
from genome.lse import SPACE_NAME, LSEGenome, LSESpace, seed_genome
from latency.ir import Graph
from latency.lse import lower_network
from mutations.lse import LSE_MUTATIONS, is_reset, lse_default_spec
from spaces.base import Space, SpaceError

#: The collection whose leaves are trainable parameters (``batch_stats`` are statistics, not counted).
PARAMS = "params"


def _lower(genome: LSEGenome, network: Mapping[str, Any]) -> Graph:
    return lower_network(genome, network)


def _require(genome: Genome, role: str) -> LSEGenome:
    if not isinstance(genome, LSEGenome):
        raise SpaceError(f"the {SPACE_NAME} hooks take {SPACE_NAME} genomes; the {role} is a {genome.space} genome")
    return genome


def training_overrides(genome: Genome) -> Mapping[str, Any]:
    """The training settings an lse genome carries: its learning rate replaces the experiment's."""
    return {"learning_rate": _require(genome, "child").learning_rate}


def _shape(leaf: Any) -> tuple[int, ...] | None:
    shape = getattr(leaf, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def _same(fresh: Any, old: Any) -> bool:
    """Whether ``old`` has exactly ``fresh``'s structure, leaf shapes and (where both say) dtypes."""
    if isinstance(fresh, Mapping):
        return isinstance(old, Mapping) and set(fresh) == set(old) and all(_same(fresh[k], old[k]) for k in fresh)
    if isinstance(old, Mapping) or _shape(fresh) is None or _shape(fresh) != _shape(old):
        return False
    a, b = getattr(fresh, "dtype", None), getattr(old, "dtype", None)
    return a is None or b is None or str(a) == str(b)


def _size(tree: Any) -> int:
    if isinstance(tree, Mapping):
        return sum(_size(v) for v in tree.values())
    shape = _shape(tree)
    return math.prod(shape) if shape is not None else 0


def inherit(parent: Genome, child: Genome, mutation: str, parent_variables: Mapping[str, Any],
            fresh_child_variables: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The variables an lse child starts from, and how many parameters it inherited from its parent.

    Layers are the top-level scopes of each collection (``e{id}`` convolutions, ``v{id}_bn`` batch norms,
    ``classifier``), named after the genome's stable ids, so a scope present in both with the same leaves
    and shapes is the same place with the same shape: it starts from the parent's values (its ``params`` and
    ``batch_stats`` alike), everything else from ``fresh_child_variables``. A ``reset_weights`` mutation
    inherits nothing. Arrays are passed on as they are (not copied); the count is of ``params`` elements.
    """
    _require(parent, "parent")
    _require(child, "child")
    fresh = {k: dict(v) if isinstance(v, Mapping) else v for k, v in fresh_child_variables.items()}
    if is_reset(mutation):
        return fresh, 0
    out: dict[str, Any] = {}
    inherited = 0
    for collection, layers in fresh.items():
        theirs = parent_variables.get(collection)
        if not isinstance(layers, dict) or not isinstance(theirs, Mapping):
            out[collection] = layers
            continue
        merged: dict[str, Any] = {}
        for name, value in layers.items():
            old = theirs.get(name)
            if old is not None and _same(value, old):
                merged[name] = old
                if collection == PARAMS:
                    inherited += _size(old)
            else:
                merged[name] = value
        out[collection] = merged
    return out, inherited


LSE = Space(
    name=SPACE_NAME,
    description="Large-Scale Evolution: whole networks as graphs (convolutions, identities, skips) grown from a "
                "trivial seed, with the learning rate in the genome",
    codec=LSESpace(),
    mutations=LSE_MUTATIONS,
    default_mutation=lse_default_spec(),
    # CIFAR-10 as the paper searched it: 32x32 RGB images, 10 classes.
    network={"input_size": 32, "num_classes": 10},
    lower=_lower,
    named={"lse-seed": seed_genome},
    model="nets.lse:build",
    configs={"train": "lse-tiny"},
    training_overrides=training_overrides,
    inherit=inherit,
)
