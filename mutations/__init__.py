"""Mutation operators as frozen values: space-specific operators, combinators, and a JSON spec codec."""

from mutations.base import Mutated, Mutation, MutationError
from mutations.combinators import Chain, Choice, Identity, UntilChanged
from mutations.spec import build_mutation

__all__ = [
    "Chain",
    "Choice",
    "Identity",
    "Mutated",
    "Mutation",
    "MutationError",
    "UntilChanged",
    "build_mutation",
]
