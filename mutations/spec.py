"""Build mutation operators from JSON specs (stored with each experiment so replay rebuilds them).

The combinators (``identity``, ``choice``, ``chain``, ``until_changed``) are built in; the leaves come
from the search space (``spaces.Space.mutations``: JSON type -> operator class), so a spec can only
name operators that apply to its space. A leaf's other keys are its constructor's keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mutations.base import Mutation, MutationError
from mutations.combinators import Chain, Choice, Identity, UntilChanged

COMBINATORS = ("identity", "choice", "chain", "until_changed")
#: Deeper specs are certainly not hand-written; refusing them keeps a hostile spec from exhausting the stack.
MAX_DEPTH = 32


def build_mutation(spec: Any, leaves: Mapping[str, Callable[..., Mutation]], _depth: int = 0) -> Mutation:
    """Turn a JSON spec into an operator whose leaves are the space's ``leaves``; MutationError otherwise."""
    if _depth > MAX_DEPTH:
        raise MutationError(f"mutation spec is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        shown = repr(spec)
        raise MutationError(f"a mutation spec must be an object with a 'type', got {shown[:80]}")
    kind = spec["type"]
    if kind in leaves:
        params = {k: v for k, v in spec.items() if k != "type"}
        try:
            return leaves[kind](**params)
        except TypeError:
            raise MutationError(f"mutation {kind!r} does not take {', '.join(sorted(params))}") from None
    if kind == "identity":
        if set(spec) != {"type"}:
            raise MutationError("mutation 'identity' takes no parameters")
        return Identity()
    if kind == "choice":
        options = spec.get("options")
        if not isinstance(options, list) or not options:
            raise MutationError("choice needs a non-empty 'options' list")
        built = []
        for o in options:
            if not isinstance(o, dict) or "op" not in o:
                raise MutationError(f"choice option must be {{'weight': w, 'op': spec}}, got {str(o)[:80]}")
            weight = o.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise MutationError(f"choice weight must be a number, got {weight!r}")
            built.append((float(weight), build_mutation(o["op"], leaves, _depth + 1)))
        return Choice(tuple(built))
    if kind == "chain":
        steps = spec.get("steps")
        if not isinstance(steps, list) or not steps:
            raise MutationError("chain needs a non-empty 'steps' list")
        return Chain(tuple(build_mutation(s, leaves, _depth + 1) for s in steps))
    if kind == "until_changed":
        tries = spec.get("max_tries", 100)
        if isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= 10_000:
            raise MutationError(f"until_changed max_tries must be an integer in 1..10000, got {tries!r}")
        return UntilChanged(build_mutation(spec.get("op"), leaves, _depth + 1), tries)
    raise MutationError(f"unknown mutation type {str(kind)[:60]!r}; expected one of {', '.join([*leaves, *COMBINATORS])}")
