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
from mutations import Chain, Choice, Identity, MutationError, UntilChanged, build_mutation
from mutations.nasnet import NASNET_MUTATIONS, HiddenStateMutation, OpMutation
from mutations.nb201 import NB201_MUTATIONS, EdgeOpMutation

pytestmark = pytest.mark.unit

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
    op = NASNET.build_mutation()
    parent = NASNET.sample(random.Random(genome_seed))
    result = op(parent, random.Random(mutation_seed))
    n = len(_differences(parent, result.genome))
    assert (n == 0) == (result.description == "identity")
    assert n in (0, 1)


def test_default_mix_is_five_percent_identity_rest_shared() -> None:
    op = NASNET.build_mutation()
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
        child = NASNET.build_mutation()(parent, rng).genome
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
    op = build_mutation(spec, NASNET.mutations)
    assert isinstance(op, Chain)
    assert build_mutation(op.to_spec(), NASNET.mutations) == op
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
        ({"type": "crossover"}, "nasnet", "unknown mutation type 'crossover'"),
        # A leaf of another space is unknown to this one: the message names the leaves that are.
        ({"type": "edge_op"}, "nasnet", "unknown mutation type 'edge_op'; expected one of hidden_state, op, identity"),
        ({"type": "op"}, "nb201", "unknown mutation type 'op'; expected one of edge_op, identity"),
        ({"type": "hidden_state"}, "nb201", "unknown mutation type 'hidden_state'"),
        ({"type": "choice", "options": [{"weight": 1, "op": {"type": "edge_op"}}]}, "nasnet", "'edge_op'"),
        ({"type": "choice", "options": []}, "nasnet", "non-empty"),
        ({"type": "choice", "options": [{"weight": -1, "op": {"type": "op"}}]}, "nasnet", "non-negative"),
        ({"type": "choice", "options": [{"weight": "x", "op": {"type": "op"}}]}, "nasnet", "must be a number"),
        ({"type": "until_changed", "op": {"type": "op"}, "max_tries": 0}, "nasnet", "integer in 1..10000"),
        ({"type": "until_changed", "op": {"type": "op"}, "max_tries": 10_001}, "nasnet", "integer in 1..10000"),
        # A leaf's other keys are its constructor's keyword arguments: these leaves take none.
        ({"type": "op", "p": 1}, "nasnet", "mutation 'op' does not take p"),
        ({"type": "edge_op", "p": 1, "q": 2}, "nb201", "mutation 'edge_op' does not take p, q"),
        ({"type": "identity", "p": 1}, "nasnet", "takes no parameters"),
        ("op", "nasnet", "must be an object"),
        ({"op": "op"}, "nasnet", "must be an object with a 'type'"),
    ],
)
def test_bad_specs_are_rejected(spec, space, message) -> None:
    with pytest.raises(MutationError, match=message):
        build_mutation(copy.deepcopy(spec), spaces.get(space).mutations)
    with pytest.raises(MutationError, match=message):
        spaces.get(space).build_mutation(copy.deepcopy(spec))


def test_hostile_nesting_is_refused() -> None:
    spec: dict = {"type": "op"}
    for _ in range(40):
        spec = {"type": "chain", "steps": [spec]}
    with pytest.raises(MutationError, match="nested more than 32"):
        NASNET.build_mutation(spec)


def test_space_leaves_and_default_mutations() -> None:
    assert dict(NASNET.mutations) == NASNET_MUTATIONS == {"hidden_state": HiddenStateMutation, "op": OpMutation}
    assert dict(NB201.mutations) == NB201_MUTATIONS == {"edge_op": EdgeOpMutation}
    # None builds the space's default spec; the default spec builds the same operator.
    assert NASNET.build_mutation() == build_mutation(dict(NASNET.default_mutation), NASNET.mutations)
    assert NB201.build_mutation() == EdgeOpMutation()
    assert NB201.default_mutation == {"type": "edge_op"}
    assert NASNET.build_mutation().to_spec() == NASNET.default_mutation
    # Building never changes the stored default spec.
    before = copy.deepcopy(dict(NASNET.default_mutation))
    NASNET.build_mutation()
    assert dict(NASNET.default_mutation) == before


def test_wrong_space_genome_is_rejected() -> None:
    with pytest.raises(MutationError, match="nasnet"):
        OpMutation()(NB201.sample(random.Random(0)), random.Random(0))
    with pytest.raises(MutationError, match="nb201"):
        EdgeOpMutation()(NASNET.sample(random.Random(0)), random.Random(0))
