"""Build mutation operators from JSON specs (stored with each experiment so replay rebuilds them)."""

from __future__ import annotations

from typing import Any

from mutations.base import Mutation, MutationError
from mutations.combinators import Chain, Choice, Identity, UntilChanged
from mutations.nasnet import HiddenStateMutation, OpMutation
from mutations.nb201 import EdgeOpMutation

_LEAVES: dict[str, type] = {
    "identity": Identity,
    "hidden_state": HiddenStateMutation,
    "op": OpMutation,
    "edge_op": EdgeOpMutation,
}

#: Which leaf operators make sense for which space.
_SPACE_LEAVES = {"nasnet": {"identity", "hidden_state", "op"}, "nb201": {"identity", "edge_op"}}


def default_mutation_spec(space: str, identity_prob: float = 0.05) -> dict[str, Any]:
    """The paper's mutation: identity with ``identity_prob``, the space's real mutations sharing the rest."""
    if space == "nasnet":
        rest = (1.0 - identity_prob) / 2
        return {
            "type": "choice",
            "options": [
                {"weight": identity_prob, "op": {"type": "identity"}},
                {"weight": rest, "op": {"type": "hidden_state"}},
                {"weight": rest, "op": {"type": "op"}},
            ],
        }
    if space == "nb201":
        # NAS-Bench-201's REA mutates exactly one edge op every time.
        return {"type": "edge_op"}
    raise MutationError(f"no default mutation for space {space!r}")


def build_mutation(spec: Any, space: str | None = None) -> Mutation:
    """Turn a JSON spec into an operator; with ``space``, reject leaves that do not apply to it."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise MutationError(f"a mutation spec must be an object with a 'type', got {spec!r}")
    kind = spec["type"]
    allowed = _SPACE_LEAVES.get(space or "", set(_LEAVES))
    if kind in _LEAVES:
        if kind not in allowed:
            raise MutationError(f"mutation {kind!r} does not apply to space {space!r}")
        extra = set(spec) - {"type"}
        if extra:
            raise MutationError(f"mutation {kind!r} takes no parameters, got {', '.join(sorted(extra))}")
        op: Mutation = _LEAVES[kind]()
        return op
    if kind == "choice":
        options = spec.get("options")
        if not isinstance(options, list) or not options:
            raise MutationError("choice needs a non-empty 'options' list")
        built = []
        for o in options:
            if not isinstance(o, dict) or "op" not in o:
                raise MutationError(f"choice option must be {{'weight': w, 'op': spec}}, got {o!r}")
            weight = o.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise MutationError(f"choice weight must be a number, got {weight!r}")
            built.append((float(weight), build_mutation(o["op"], space)))
        return Choice(tuple(built))
    if kind == "chain":
        steps = spec.get("steps")
        if not isinstance(steps, list) or not steps:
            raise MutationError("chain needs a non-empty 'steps' list")
        return Chain(tuple(build_mutation(s, space) for s in steps))
    if kind == "until_changed":
        tries = spec.get("max_tries", 100)
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
            raise MutationError(f"until_changed max_tries must be a positive integer, got {tries!r}")
        return UntilChanged(build_mutation(spec.get("op"), space), tries)
    raise MutationError(
        f"unknown mutation type {kind!r}; expected one of {', '.join([*_LEAVES, 'choice', 'chain', 'until_changed'])}"
    )
