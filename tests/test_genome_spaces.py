"""Search spaces: sampling, validation messages, canonical JSON, fingerprints, named genomes, NB201 codec."""

from __future__ import annotations

import csv
import json
import random

import pytest

import spaces
from genome import NASNET_OPS, GenomeError, NASNetGenome, NB201Genome, canonical_json
from genome.nb201 import parse_arch_str
from tables.nb201 import default_table_path

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
    assert set(decoded) == set(NB201.all_genomes())


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
