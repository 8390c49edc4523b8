"""Search algorithms as pure, replayable folds: aging and non-aging evolution, random search, and plug-ins."""

from evolution.algorithms import (
    Algorithm,
    AlgorithmContext,
    AlgorithmError,
    EvolutionConfig,
    Member,
    Proposal,
    algorithm_names,
    build_algorithm,
    register_algorithm,
)
from evolution.objectives import Objective, ObjectiveError, build_objective, pareto_front_indices
from evolution.replay import Completed, Failed, Proposed, ReplayMismatch, ReplayState, Seeded, fold, verify
from evolution.rng import rng_for

__all__ = [
    "Algorithm",
    "AlgorithmContext",
    "AlgorithmError",
    "Completed",
    "EvolutionConfig",
    "Failed",
    "Member",
    "Objective",
    "ObjectiveError",
    "Proposal",
    "Proposed",
    "ReplayMismatch",
    "ReplayState",
    "Seeded",
    "algorithm_names",
    "build_algorithm",
    "build_objective",
    "fold",
    "pareto_front_indices",
    "register_algorithm",
    "rng_for",
    "verify",
]
