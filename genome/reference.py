"""Published NASNet-space genotypes (AmoebaNet-A, NASNet-A) as plain data, and their conversion to genomes.

Provenance: AmoebaNet-A from tensorflow/tpu ``models/official/amoeba_net/model_specs.py``; NASNet-A from
tensorflow/models ``research/slim/nets/nasnet/nasnet_utils.py`` (both Apache-2.0). For combination k,
left = (operations[2k], hiddenstate_indices[2k]) and right = (operations[2k+1], hiddenstate_indices[2k+1]).

The reference code concatenates every state whose stored ``used_hiddenstates`` flag is 0. That mask is
not derived from the combinations and differs from actual use (AmoebaNet-A's normal cell also passes
input state 1 through). Amoeba derives the output from the combinations, as the paper describes, and
keeps the difference as the cell's ``extra_outputs`` so the named genomes reproduce the published
models and their parameter counts.
"""

from __future__ import annotations

from typing import Any

from genome.base import GenomeError
from genome.nasnet import NUM_INPUTS, NUM_STATES, Cell, Combination, NASNetGenome

REFERENCE_OP_NAMES = {
    "none": "identity",
    "separable_3x3_2": "sep_conv_3x3",
    "separable_5x5_2": "sep_conv_5x5",
    "separable_7x7_2": "sep_conv_7x7",
    "avg_pool_3x3": "avg_pool_3x3",
    "max_pool_3x3": "max_pool_3x3",
    "dil_2_separable_3x3_2": "dil_sep_conv_3x3",
    "1x7_7x1": "conv_1x7_7x1",
}

REFERENCE_CELLS: dict[str, dict[str, dict[str, list[Any]]]] = {
    "amoebanet-a": {
        "normal": {
            "operations": ["avg_pool_3x3", "max_pool_3x3", "separable_3x3_2", "none", "none", "avg_pool_3x3",
                           "separable_3x3_2", "separable_5x5_2", "avg_pool_3x3", "separable_3x3_2"],
            "hiddenstate_indices": [0, 0, 1, 1, 0, 1, 0, 2, 5, 0],
            "used_hiddenstates": [1, 0, 1, 0, 0, 1, 0],
        },
        "reduction": {
            "operations": ["separable_3x3_2", "avg_pool_3x3", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3",
                           "max_pool_3x3", "separable_3x3_2", "1x7_7x1", "avg_pool_3x3", "separable_7x7_2"],
            "hiddenstate_indices": [1, 0, 0, 2, 1, 0, 4, 0, 1, 0],
            "used_hiddenstates": [1, 1, 0, 0, 0, 0, 0],
        },
    },
    "nasnet-a": {
        "normal": {
            "operations": ["separable_5x5_2", "separable_3x3_2", "separable_5x5_2", "separable_3x3_2", "avg_pool_3x3",
                           "none", "avg_pool_3x3", "avg_pool_3x3", "separable_3x3_2", "none"],
            "hiddenstate_indices": [0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
            "used_hiddenstates": [1, 0, 0, 0, 0, 0, 0],
        },
        "reduction": {
            "operations": ["separable_5x5_2", "separable_7x7_2", "max_pool_3x3", "separable_7x7_2", "avg_pool_3x3",
                           "separable_5x5_2", "none", "avg_pool_3x3", "separable_3x3_2", "max_pool_3x3"],
            "hiddenstate_indices": [0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
            "used_hiddenstates": [1, 1, 1, 0, 0, 0, 0],
        },
    },
}

#: Published sizes, for the model-fidelity tests and the README.
PUBLISHED = {
    "amoebanet-a": {"cifar10": {"N": 6, "F": 36, "params_M": 3.2}, "cifar10_small": {"N": 6, "F": 32, "params_M": 2.6},
                    "imagenet": {"N": 6, "F": 190, "params_M": 86.7, "mult_adds_B": 23.1}},
    "nasnet-a": {"cifar10": {"N": 6, "F": 32, "params_M": 3.3}, "imagenet": {"params_M": 88.9, "mult_adds_B": 23.8}},
}


def cell_from_reference(spec: dict[str, list[Any]]) -> Cell:
    """Convert one reference-code cell (ops, indices, stored mask) into a Cell with the mask kept as extras."""
    ops = [REFERENCE_OP_NAMES[o] for o in spec["operations"]]
    idx = spec["hiddenstate_indices"]
    combos = tuple(Combination(idx[2 * k], ops[2 * k], idx[2 * k + 1], ops[2 * k + 1]) for k in range(len(ops) // 2))
    stored_concat = {s for s in range(NUM_STATES) if spec["used_hiddenstates"][s] == 0}
    derived = Cell(combos)
    missing = set(derived.output_states()) - stored_concat
    if missing:
        raise GenomeError(f"reference mask drops unconsumed states {sorted(missing)}")
    extras = frozenset(stored_concat - set(derived.output_states()))
    assert all(0 <= s < NUM_STATES for s in extras) and NUM_INPUTS == 2
    return Cell(combos, extras)


def reference_genome(name: str) -> NASNetGenome:
    cells = REFERENCE_CELLS[name]
    return NASNetGenome(cell_from_reference(cells["normal"]), cell_from_reference(cells["reduction"]))
