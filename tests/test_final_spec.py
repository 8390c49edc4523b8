"""The final experiment's spec (``orchestrator.final``): the space's own final preset when none is named."""

from __future__ import annotations

import json

import pytest

import spaces
from domain import InvalidArgument
from orchestrator.final import Pick, final_spec

pytestmark = pytest.mark.unit


def _pick(genome_name: str) -> Pick:
    genome = spaces.named_genome(genome_name)
    return Pick("search", 7, genome.fingerprint, json.dumps(genome.to_json()))


def test_a_space_with_a_final_preset_retrains_with_it_unless_another_is_named() -> None:
    assert spaces.get("nasnet").final_preset == "amoebanet-final"
    spec = final_spec("nasnet", [_pick("amoebanet-a")], name="search-final")
    assert (spec.training["preset"], spec.training["split"], spec.algorithm) == ("amoebanet-final", "final", "fixed")
    named = final_spec("nasnet", [_pick("amoebanet-a")], name="search-final", preset="tiny-final")
    assert named.training["preset"] == "tiny-final"


def test_a_space_without_one_asks_for_a_preset() -> None:
    assert spaces.get("nb201").final_preset is None
    genome = spaces.parse_genome("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    pick = Pick("search", 3, genome.fingerprint, json.dumps(genome.to_json()))
    with pytest.raises(InvalidArgument, match="the nb201 space has no default final-training preset; pass --preset"):
        final_spec("nb201", [pick], name="nb-final")
    assert final_spec("nb201", [pick], name="nb-final", preset="tiny-final").training["preset"] == "tiny-final"
