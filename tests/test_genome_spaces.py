"""Search spaces: sampling, validation messages, canonical JSON, fingerprints, named genomes, NB201 codec,
and the decision view of every registered space."""

from __future__ import annotations

import csv
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spaces
from genome import NASNET_OPS, Cell, Decision, GenomeError, NASNetGenome, NB201Genome, canonical_json
from genome.nb201 import parse_arch_str
from tables.nb201 import default_table_path

pytestmark = pytest.mark.unit

NASNET = spaces.get("nasnet")
NB201 = spaces.get("nb201")


def test_sampled_nasnet_genomes_round_trip_through_canonical_json() -> None:
    rng = random.Random(7)
    for _ in range(500):
        g = NASNET.sample(rng)
        text = canonical_json(g.to_json())
        again = spaces.parse_genome(json.loads(text))
        assert again == g
        assert again.fingerprint == g.fingerprint
        for kind in ("normal", "reduction"):
            for k, combo in enumerate(g.cell(kind).combinations):
                assert max(combo.inputs()) < 2 + k
                assert set(combo.ops()) <= set(NASNET_OPS)


def test_fingerprint_is_stable_and_depends_on_content() -> None:
    g = spaces.named_genome("amoebanet-a")
    # Pinned: a change to canonical JSON or hashing would silently split existing databases.
    assert g.fingerprint == "fe12a4dc61cc3ec1"
    assert NB201Genome(("none",) * 6).fingerprint == "19baedca72244b3c"
    assert len(g.fingerprint) == 16
    assert g.fingerprint != spaces.named_genome("nasnet-a").fingerprint
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_named_genomes_reproduce_reference_output_masks() -> None:
    amoeba = spaces.named_genome("amoebanet-a")
    assert isinstance(amoeba, NASNetGenome)
    # The reference code concatenates states 1,3,4,6 (normal) and 2..6 (reduction).
    assert amoeba.normal.output_states() == (1, 3, 4, 6)
    assert amoeba.reduction.output_states() == (2, 3, 4, 5, 6)
    assert amoeba.normal.combinations[0].ops() == ("avg_pool_3x3", "max_pool_3x3")
    nasnet = spaces.named_genome("nasnet-a")
    assert isinstance(nasnet, NASNetGenome)
    assert nasnet.normal.output_states() == (1, 2, 3, 4, 5, 6)
    assert nasnet.reduction.output_states() == (3, 4, 5, 6)
    # Without the extras, outputs are derived from the combinations as the paper says.
    assert amoeba.normal.extra_outputs == frozenset({1})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["normal"]["combinations"].pop(), "exactly 5 combinations"),
        (lambda d: d["normal"]["combinations"][0][0].__setitem__(0, 2), "not an earlier hidden state"),
        (lambda d: d["reduction"]["combinations"][4][1].__setitem__(0, 6), "not an earlier hidden state"),
        (lambda d: d["normal"]["combinations"][1][1].__setitem__(1, "conv_9x9"), "unknown op 'conv_9x9'"),
        (lambda d: d["normal"]["combinations"][1][1].__setitem__(0, "1"), "must be an integer"),
        (lambda d: d["normal"]["combinations"][1][1].__setitem__(0, True), "must be an integer"),
        (lambda d: d.pop("reduction"), "missing the reduction cell"),
        (lambda d: d.__setitem__("extra", 1), "unknown keys: extra"),
        (lambda d: d["normal"].__setitem__("extra_outputs", [9]), "extra_outputs"),
        (lambda d: d["normal"]["combinations"].__setitem__(2, [[0, "identity"]]), "combination 2"),
    ],
)
def test_malformed_nasnet_genomes_are_rejected_with_a_precise_message(mutate, message) -> None:
    data = json.loads(canonical_json(NASNET.sample(random.Random(1)).to_json()))
    mutate(data)
    with pytest.raises(GenomeError, match=message):
        spaces.parse_genome(data)


def test_parse_genome_errors() -> None:
    with pytest.raises(GenomeError, match="space"):
        spaces.parse_genome({"normal": {}})
    with pytest.raises(GenomeError, match="unknown search space"):
        spaces.parse_genome({"space": "darts"})
    with pytest.raises(GenomeError, match="not valid JSON"):
        spaces.parse_genome("{nope")
    with pytest.raises(GenomeError, match="unknown genome name"):
        spaces.named_genome("amoebanet-z")


def test_nb201_codec_round_trips_every_string_of_the_shipped_table() -> None:
    with default_table_path().open(newline="") as fh:
        strings = [row["arch_str"] for row in csv.DictReader(fh)]
    assert len(strings) == 15625
    decoded = [parse_arch_str(s) for s in strings]
    assert [g.to_arch_str() for g in decoded] == strings
    assert len(set(decoded)) == 15625
    assert set(decoded) == set(NB201.codec.all_genomes())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("|none~0|+|none~0|none~1|", "3 '\\+'-separated"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must have 2"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "expected 'op~0'"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "wrapped"),
    ],
)
def test_malformed_nb201_strings_are_rejected(text: str, message: str) -> None:
    with pytest.raises(GenomeError, match=message):
        parse_arch_str(text)


def test_nb201_genome_json_and_fingerprint() -> None:
    g = NB201.sample(random.Random(3))
    assert isinstance(g, NB201Genome)
    assert spaces.parse_genome(g.to_json()) == g
    assert spaces.parse_genome(g.to_arch_str()) == g
    other = NB201Genome(tuple(reversed(g.ops)))
    assert (g.fingerprint == other.fingerprint) == (g == other)


# --- the decision view of every registered space ------------------------------------------------------

SPACE_NAMES = spaces.names()
seeds = st.integers(min_value=0, max_value=2**63)


def test_the_builtin_spaces_are_registered() -> None:
    assert {"nasnet", "nb201"} <= set(SPACE_NAMES)
    assert [s.name for s in spaces.all_spaces()] == list(SPACE_NAMES)


def _walk(space: spaces.Space, decisions: tuple[int, ...]) -> list[Decision]:
    """The Decision in force at each position of ``decisions`` (checking each value is in range), and
    that the sequence is complete."""
    seen = []
    for i, value in enumerate(decisions):
        nxt = space.next_decision(decisions[:i])
        assert isinstance(nxt, Decision), f"decision {i} of {space.name} has no Decision"
        assert isinstance(nxt.kind, str) and nxt.kind
        assert isinstance(nxt.choices, int) and nxt.choices >= 1
        assert isinstance(value, int) and not isinstance(value, bool)
        assert 0 <= value < nxt.choices
        seen.append(nxt)
    assert space.next_decision(decisions) is None
    return seen


@pytest.mark.parametrize("name", SPACE_NAMES)
@settings(max_examples=300, deadline=None)
@given(seed=seeds)
def test_decisions_of_sampled_genomes_round_trip(name: str, seed: int) -> None:
    space = spaces.get(name)
    g = space.sample(random.Random(seed))
    assert g.space == name
    decisions = space.decisions(g)
    assert isinstance(decisions, tuple)
    assert decisions == space.codec.decisions(g)
    _walk(space, decisions)
    again = space.from_decisions(decisions)
    assert again == g
    assert again.fingerprint == g.fingerprint
    assert space.codec.from_decisions(list(decisions)) == g


def _draw_sequence(data: st.DataObject, space: spaces.Space) -> tuple[int, ...]:
    """A random complete sequence, each choice drawn from what next_decision offers after the prefix."""
    out: list[int] = []
    while (nxt := space.next_decision(out)) is not None:
        out.append(data.draw(st.integers(min_value=0, max_value=nxt.choices - 1)))
        assert len(out) < 10_000, "the decision sequence never ends"
    return tuple(out)


@pytest.mark.parametrize("name", SPACE_NAMES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_in_range_sequence_is_a_valid_genome_that_round_trips(name: str, data: st.DataObject) -> None:
    space = spaces.get(name)
    decisions = _draw_sequence(data, space)
    g = space.from_decisions(decisions)
    assert g.space == name
    assert space.decisions(g) == decisions
    # Valid: the genome survives its own JSON validation.
    assert space.parse(canonical_json(g.to_json())) == g


@pytest.mark.parametrize("name", SPACE_NAMES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_out_of_range_and_incomplete_sequences_raise_genome_error(name: str, data: st.DataObject) -> None:
    space = spaces.get(name)
    decisions = list(_draw_sequence(data, space))
    assert decisions, f"{name} has an empty decision sequence"
    i = data.draw(st.integers(min_value=0, max_value=len(decisions) - 1), label="position")
    nxt = space.next_decision(decisions[:i])
    assert nxt is not None
    too_big = data.draw(st.integers(min_value=nxt.choices, max_value=nxt.choices + 1000), label="too big")
    for bad, message in ((too_big, "must be in 0.."), (-1, "must be in 0.."), (True, "must be in 0.."),
                         (float(decisions[i]), "must be in 0.."), (str(decisions[i]), "must be in 0..")):
        corrupted = [*decisions[:i], bad, *decisions[i + 1:]]
        with pytest.raises(GenomeError, match=message) as raised:
            space.from_decisions(corrupted)
        assert f"decision {i} ({nxt.kind})" in str(raised.value)
    with pytest.raises(GenomeError, match="incomplete after"):
        space.from_decisions(decisions[:i])
    with pytest.raises(GenomeError, match="1 decisions too many"):
        space.from_decisions([*decisions, 0])


def test_the_nasnet_decision_layout() -> None:
    space = spaces.get("nasnet")
    g = spaces.named_genome("nasnet-a")
    decisions = space.decisions(g)
    # 2 cells x 5 combinations x (left input, left op, right input, right op).
    assert len(decisions) == 40
    kinds = _walk(space, decisions)
    assert [d.kind for d in kinds[:4]] == ["input", "op", "input", "op"]
    # Combination k reads one of the 2 + k states made before it; every op slot offers the 8 ops.
    assert [kinds[4 * k].choices for k in range(10)] == [2, 3, 4, 5, 6] * 2
    assert {d.choices for d in kinds if d.kind == "op"} == {len(NASNET_OPS)}
    c0 = g.normal.combinations[0]
    assert decisions[:4] == (c0.left_input, NASNET_OPS.index(c0.left_op), c0.right_input,
                             NASNET_OPS.index(c0.right_op))
    # The reference genomes' extra outputs (a quirk of the published code) are not a choice: the decision
    # view keeps the combinations and drops them.
    amoeba = spaces.named_genome("amoebanet-a")
    assert amoeba.normal.extra_outputs
    plain = NASNetGenome(Cell(amoeba.normal.combinations), Cell(amoeba.reduction.combinations))
    assert space.from_decisions(space.decisions(amoeba)) == plain


def test_the_nb201_decision_layout() -> None:
    space = spaces.get("nb201")
    g = parse_arch_str("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    decisions = space.decisions(g)
    # One op per edge, in the arch string's edge order, as an index into NB201_OPS.
    assert decisions == (3, 0, 1, 4, 2, 0)
    assert {(d.kind, d.choices) for d in _walk(space, decisions)} == {("op", 5)}
    assert space.from_decisions(decisions) == g
    assert len({space.from_decisions(space.decisions(x)) for x in NB201.codec.all_genomes()}) == 15625
