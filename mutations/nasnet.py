"""AmoebaNet mutations: rewire one input of one combination, or replace one op (Real et al. 2019)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from genome import NASNET_OPS, Genome, NASNetGenome
from genome.nasnet import CELL_KINDS, NUM_COMBINATIONS, NUM_INPUTS
from mutations.base import Mutated, Mutation, MutationError


def _require_nasnet(genome: Genome) -> NASNetGenome:
    if not isinstance(genome, NASNetGenome):
        raise MutationError(f"this mutation applies to nasnet genomes, not {genome.space}")
    return genome


def _pick_site(rng: random.Random) -> tuple[str, int, str]:
    return rng.choice(CELL_KINDS), rng.randrange(NUM_COMBINATIONS), rng.choice(("left", "right"))


@dataclass(frozen=True, slots=True)
class HiddenStateMutation:
    """Pick a cell, a combination and one of its inputs; rewire it to another earlier hidden state."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require_nasnet(genome)
        kind, k, side = _pick_site(rng)
        cell = g.cell(kind)
        combo = cell.combinations[k]
        current = combo.left_input if side == "left" else combo.right_input
        # Only states created before combination k may be read, so no loop can form.
        choices = [s for s in range(NUM_INPUTS + k) if s != current]
        new = rng.choice(choices)
        changed = replace(combo, left_input=new) if side == "left" else replace(combo, right_input=new)
        combos = (*cell.combinations[:k], changed, *cell.combinations[k + 1:])
        child = g.replace_cell(kind, replace(cell, combinations=combos))
        return Mutated(child, f"hidden_state {kind}[{k}].{side}: {current}->{new}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "hidden_state"}


@dataclass(frozen=True, slots=True)
class OpMutation:
    """Pick a cell, a combination and one of its inputs; replace that input's op with another op."""

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        g = _require_nasnet(genome)
        kind, k, side = _pick_site(rng)
        cell = g.cell(kind)
        combo = cell.combinations[k]
        current = combo.left_op if side == "left" else combo.right_op
        new = rng.choice([op for op in NASNET_OPS if op != current])
        changed = replace(combo, left_op=new) if side == "left" else replace(combo, right_op=new)
        combos = (*cell.combinations[:k], changed, *cell.combinations[k + 1:])
        child = g.replace_cell(kind, replace(cell, combinations=combos))
        return Mutated(child, f"op {kind}[{k}].{side}: {current}->{new}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "op"}


#: The JSON leaf types of the NASNet space (``mutations.build_mutation`` resolves them).
NASNET_MUTATIONS: dict[str, Callable[..., Mutation]] = {"hidden_state": HiddenStateMutation, "op": OpMutation}


def nasnet_default_spec(identity_prob: float = 0.05) -> dict[str, Any]:
    """The paper's mutation: identity with ``identity_prob``, hidden-state and op mutations sharing the rest."""
    rest = (1.0 - identity_prob) / 2
    return {
        "type": "choice",
        "options": [
            {"weight": identity_prob, "op": {"type": "identity"}},
            {"weight": rest, "op": {"type": "hidden_state"}},
            {"weight": rest, "op": {"type": "op"}},
        ],
    }
