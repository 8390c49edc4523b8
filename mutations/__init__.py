"""Mutation operators as frozen values: space-specific operators, combinators, and a JSON spec codec."""

from mutations.base import Mutated, Mutation, MutationError
from mutations.combinators import Chain, Choice, Identity, UntilChanged
from mutations.nasnet import HiddenStateMutation, OpMutation
from mutations.nb201 import EdgeOpMutation
from mutations.spec import build_mutation, default_mutation_spec

__all__ = [
    "Chain",
    "Choice",
    "EdgeOpMutation",
    "HiddenStateMutation",
    "Identity",
    "Mutated",
    "Mutation",
    "MutationError",
    "OpMutation",
    "UntilChanged",
    "build_mutation",
    "default_mutation_spec",
]
