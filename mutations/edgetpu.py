"""The block space's mutation: one decision of one stage gets another value (MnasNet's space, searched by evolution)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genome import Genome
from genome.edgetpu import DECISION_KINDS, NUM_STAGES, SPACE_NAME, EdgeTPUGenome, Stage, choices_of
from mutations.base import Mutated, Mutation, MutationError


@dataclass(frozen=True, slots=True)
class StageMutation:
    """Pick a stage uniformly and one of its decisions (uniformly, or the one named by ``decision``), and
    give it another of its values. Scaling coefficients are carried over unchanged."""

    decision: str | None = None

    def __post_init__(self) -> None:
        if self.decision is not None and self.decision not in DECISION_KINDS:
            raise MutationError(f"stage mutation decision must be one of {', '.join(DECISION_KINDS)}, "
                                f"got {str(self.decision)[:60]!r}")

    def __call__(self, genome: Genome, rng: random.Random) -> Mutated:
        if not isinstance(genome, EdgeTPUGenome):
            raise MutationError(f"the stage mutation applies to {SPACE_NAME} genomes, not {genome.space}")
        index = rng.randrange(NUM_STAGES)
        kind = self.decision if self.decision is not None else rng.choice(DECISION_KINDS)
        stage = genome.stages[index]
        current = getattr(stage, kind)
        new = rng.choice([v for v in choices_of(index, kind) if v != current])
        values = {k: getattr(stage, k) for k in DECISION_KINDS}
        values[kind] = new
        return Mutated(genome.replace_stage(index, Stage(**values)), f"stage {index} {kind}: {current}->{new}")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "stage"} if self.decision is None else {"type": "stage", "decision": self.decision}


#: The JSON leaf types of the block space.
EDGETPU_MUTATIONS: dict[str, Callable[..., Mutation]] = {"stage": StageMutation}


def edgetpu_default_spec(identity_prob: float = 0.05) -> dict[str, Any]:
    """Identity with ``identity_prob`` (the AmoebaNet default's share), else one decision of one stage changes."""
    return {
        "type": "choice",
        "options": [
            {"weight": identity_prob, "op": {"type": "identity"}},
            {"weight": 1.0 - identity_prob, "op": {"type": "stage"}},
        ],
    }
