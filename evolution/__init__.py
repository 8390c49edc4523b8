"""Aging (regularized) evolution, non-aging evolution and random search as pure, replayable steps."""

from evolution.algorithms import (
    ALGORITHMS,
    EvolutionConfig,
    Member,
    Proposal,
    observe,
    propose,
)
from evolution.objectives import Objective, ObjectiveError, build_objective
from evolution.replay import Completed, Failed, Proposed, ReplayMismatch, Seeded, fold, verify
from evolution.rng import rng_for

__all__ = [
    "ALGORITHMS",
    "Completed",
    "EvolutionConfig",
    "Failed",
    "Member",
    "Objective",
    "ObjectiveError",
    "Proposal",
    "Proposed",
    "ReplayMismatch",
    "Seeded",
    "build_objective",
    "fold",
    "observe",
    "propose",
    "rng_for",
    "verify",
]
