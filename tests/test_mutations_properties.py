"""Mutation properties over thousands of random genomes (hypothesis): validity, no loops, one change, purity."""

from __future__ import annotations

import copy
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spaces
from genome import NASNetGenome, NB201Genome, canonical_json
from mutations import (
    Chain,
    Choice,
    EdgeOpMutation,
    HiddenStateMutation,
    Identity,
    MutationError,
    OpMutation,
    UntilChanged,
    build_mutation,
    default_mutation_spec,
)

NASNET = spaces.get("nasnet")
NB201 = spaces.get("nb201")
seeds = st.integers(min_value=0, max_value=2**63)


def _nasnet_sites(g: NASNetGenome) -> list[tuple[str, int, str, object]]:
    out = []
    for kind in ("normal", "reduction"):
        for k, c in enumerate(g.cell(kind).combinations):
            out += [(kind, k, "left_input", c.left_input), (kind, k, "left_op", c.left_op)]
            out += [(kind, k, "right_input", c.right_input), (kind, k, "right_op", c.right_op)]
    return out


def _differences(a: NASNetGenome, b: NASNetGenome) -> list[tuple[str, int, str]]:
    return [x[:3] for x, y in zip(_nasnet_sites(a), _nasnet_sites(b), strict=True) if x[3] != y[3]]


@settings(max_examples=3000, deadline=None)
@given(genome_seed=seeds, mutation_seed=seeds, which=st.sampled_from(["hidden_state", "op"]))
def test_nasnet_mutation_changes_exactly_one_place_and_stays_valid(genome_seed, mutation_seed, which) -> None:
    parent = NASNET.sample(random.Random(genome_seed))
    before = canonical_json(parent.to_json())
    op = HiddenStateMutation() if which == "hidden_state" else OpMutation()
    child = op(parent, random.Random(mutation_seed)).genome
    # The input is never modified (frozen values, but check the serialized form too).
    assert canonical_json(parent.to_json()) == before
    # Always valid, and so no loop: every input reads an earlier state.
    assert spaces.parse_genome(child.to_json()) == child
    diffs = _differences(parent, child)
    assert len(diffs) == 1
    assert diffs[0][2].endswith("input" if which == "hidden_state" else "op")


@settings(max_examples=2000, deadline=None)
@given(genome_seed=seeds, mutation_seed=seeds)
def test_nb201_edge_op_mutation_changes_exactly_one_edge(genome_seed, mutation_seed) -> None:
    parent = NB201.sample(random.Random(genome_seed))
    child = EdgeOpMutation()(parent, random.Random(mutation_seed)).genome
    assert isinstance(child, NB201Genome)
    assert sum(a != b for a, b in zip(parent.ops, child.ops, strict=True)) == 1
    assert spaces.parse_genome(child.to_arch_str()) == child


@settings(max_examples=500, deadline=None)
@given(genome_seed=seeds, mutation_seed=seeds)
def test_default_nasnet_mutation_is_identity_or_exactly_one_change(genome_seed, mutation_seed) -> None:
    op = build_mutation(default_mutation_spec("nasnet"), "nasnet")
    parent = NASNET.sample(random.Random(genome_seed))
    result = op(parent, random.Random(mutation_seed))
    n = len(_differences(parent, result.genome))
    assert (n == 0) == (result.description == "identity")
    assert n in (0, 1)


def test_default_mix_is_five_percent_identity_rest_shared() -> None:
    op = build_mutation(default_mutation_spec("nasnet"), "nasnet")
    parent = NASNET.sample(random.Random(0))
    rng = random.Random(42)
    counts = Counter(op(parent, rng).description.split(" ")[0] for _ in range(20000))
    assert abs(counts["identity"] / 20000 - 0.05) < 0.01
    assert abs(counts["hidden_state"] / 20000 - 0.475) < 0.02
    assert abs(counts["op"] / 20000 - 0.475) < 0.02


def test_mutations_keep_reference_extras_and_validity() -> None:
    parent = spaces.named_genome("amoebanet-a")
    rng = random.Random(5)
    for _ in range(300):
        child = build_mutation(default_mutation_spec("nasnet"), "nasnet")(parent, rng).genome
        assert isinstance(child, NASNetGenome)
        assert child.normal.extra_outputs == parent.normal.extra_outputs
        assert spaces.parse_genome(child.to_json()) == child


def test_specs_round_trip_and_combinators_compose() -> None:
    spec = {
        "type": "chain",
        "steps": [
            {"type": "until_changed", "op": {"type": "choice", "options": [
                {"weight": 1, "op": {"type": "identity"}}, {"weight": 3, "op": {"type": "op"}}]}, "max_tries": 50},
            {"type": "hidden_state"},
        ],
    }
    op = build_mutation(spec, "nasnet")
    assert isinstance(op, Chain)
    assert build_mutation(op.to_spec(), "nasnet") == op
    parent = NASNET.sample(random.Random(9))
    child = op(parent, random.Random(10)).genome
    assert 1 <= len(_differences(parent, child)) <= 2
    # Operators are values: equal specs give equal operators, and the same RNG state gives the same child.
    assert op(parent, random.Random(10)).genome == child
    assert UntilChanged(Identity(), 3)(parent, random.Random(0)).genome == parent
    assert Choice(((1.0, OpMutation()),)) == Choice(((1.0, OpMutation()),))


@pytest.mark.parametrize(
    ("spec", "space", "message"),
    [
        ({"type": "crossover"}, "nasnet", "unknown mutation type"),
        ({"type": "edge_op"}, "nasnet", "does not apply"),
        ({"type": "op"}, "nb201", "does not apply"),
        ({"type": "choice", "options": []}, "nasnet", "non-empty"),
        ({"type": "choice", "options": [{"weight": -1, "op": {"type": "op"}}]}, "nasnet", "non-negative"),
        ({"type": "choice", "options": [{"weight": "x", "op": {"type": "op"}}]}, "nasnet", "must be a number"),
        ({"type": "until_changed", "op": {"type": "op"}, "max_tries": 0}, "nasnet", "positive integer"),
        ({"type": "op", "p": 1}, "nasnet", "takes no parameters"),
        ("op", "nasnet", "must be an object"),
    ],
)
def test_bad_specs_are_rejected(spec, space, message) -> None:
    with pytest.raises(MutationError, match=message):
        build_mutation(copy.deepcopy(spec), space)


def test_wrong_space_genome_is_rejected() -> None:
    with pytest.raises(MutationError, match="nasnet"):
        OpMutation()(NB201.sample(random.Random(0)), random.Random(0))
    with pytest.raises(MutationError, match="nb201"):
        EdgeOpMutation()(NASNET.sample(random.Random(0)), random.Random(0))
