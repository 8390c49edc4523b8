"""The EfficientNet-EdgeTPU block space as a registry entry (Gupta & Tan 2019; MnasNet's space, Tan et al. 2019)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from genome.edgetpu import COMPOUND, EFFICIENTNET_EDGETPU_S, EdgeTPUGenome, EdgeTPUSpace, scale_genome
from latency.edgetpu import lower_network
from latency.ir import Graph
from mutations.edgetpu import EDGETPU_MUTATIONS, edgetpu_default_spec
from spaces.base import Space


def _lower(genome: EdgeTPUGenome, network: Mapping[str, Any]) -> Graph:
    return lower_network(genome, network)


def _scaled(name: str) -> Callable[[], EdgeTPUGenome]:
    coefficients = COMPOUND[name]
    return lambda: scale_genome(EFFICIENTNET_EDGETPU_S, coefficients.depth, coefficients.width)


EDGETPU = Space(
    name="edgetpu",
    description="EfficientNet-EdgeTPU blocks: 6 stages of fused or MBConv blocks (kernel, expansion, layers, filters)",
    codec=EdgeTPUSpace(),
    mutations=EDGETPU_MUTATIONS,
    default_mutation=edgetpu_default_spec(),
    # The deployed network, which latency is priced for: 224x224 ImageNet images, 1000 classes, the genome's own
    # widths and depths (``width``/``depth`` multiply them: a proxy child's training network is narrower).
    network={"input_size": 224, "num_classes": 1000, "width": 1.0, "depth": 1.0},
    lower=_lower,
    named={
        "efficientnet-edgetpu-s": lambda: EFFICIENTNET_EDGETPU_S,
        # S compound-scaled with EfficientNet-EdgeTPU's coefficients (deployed at 240 and 300 px).
        "efficientnet-edgetpu-m": _scaled("M"),
        "efficientnet-edgetpu-l": _scaled("L"),
    },
    model="nets.edgetpu:build",
    configs={"train": "edgetpu-tiny"},
)
