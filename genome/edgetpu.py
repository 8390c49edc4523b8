"""The EfficientNet-EdgeTPU block space: a MnasNet-style skeleton of six searchable stages, and its network plan.

Gupta & Tan 2019 (the EfficientNet-EdgeTPU post) searched a MnasNet space (Tan et al. 2019: a factorized
hierarchical space, one choice of block per stage, repeated a searched number of times) "augmented with
building blocks that execute efficiently on the Edge TPU". The skeleton here is EfficientNet-EdgeTPU-S's
(tensorflow/tpu ``models/official/efficientnet/edgetpu``, Apache-2.0; ../shared/reference/edgetpu.md):

- fixed stem: a 3x3 convolution to 32 channels, stride 2 (stride 1 below 128 px: ``stem_stride``);
- six stages with fixed strides 1, 2, 2, 2, 1, 2; per stage the block kind (``fused``: a regular KxK
  expansion convolution, then a 1x1 projection; ``mbconv``: 1x1 expansion, KxK depthwise, 1x1
  projection), the kernel K (3, 5), the expansion ratio (4, 8), the number of layers (the base -1, 0,
  +1, at least 1) and the output filters (the base x 0.75, 1, 1.25, to the nearest multiple of 8);
- fixed head: a 1x1 convolution to 1280, global average pooling, the classifier.

Every convolution is followed by batch norm, and by ReLU except the projections (linear bottlenecks): no
swish and no squeeze-and-excitation, which the Edge TPU compiler does not map. A block adds its input
when its stride is 1 and its input and output widths match.

A genome may carry compound-scaling coefficients (EfficientNet, Tan & Le 2019): ``depth`` multiplies
each stage's layers (rounded up), ``width`` its filters (and the stem's and head's; EfficientNet's
``round_filters``). They are not decisions (the search space is the unscaled skeleton, as the paper's)
and mutations carry them over; the input resolution is the network's ``input_size``, not the genome's.

``plan(genome, width=, depth=)`` is the network itself, block by block, which the Flax model
(``nets.edgetpu``) and the latency lowering (``latency.edgetpu``) both build from.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from genome.base import Decision, GenomeError, check_decisions, fingerprint_of, shown

SPACE_NAME = "edgetpu"
BLOCKS: tuple[str, ...] = ("fused", "mbconv")
KERNELS: tuple[int, ...] = (3, 5)
EXPANSIONS: tuple[int, ...] = (4, 8)
LAYER_OFFSETS: tuple[int, ...] = (-1, 0, 1)
FILTER_MULTIPLIERS: tuple[float, ...] = (0.75, 1.0, 1.25)
DIVISOR = 8
STEM_FILTERS = 32
HEAD_FILTERS = 1280
#: Inputs smaller than this use a stride-1 stem (CIFAR's 32x32 then reaches the head at 2x2, as 224 reaches it at 7x7).
STRIDE2_STEM_MIN_INPUT = 128
#: Bounds of the compound-scaling coefficients a genome may carry.
MAX_SCALE = 8.0

DECISION_KINDS: tuple[str, ...] = ("block", "kernel", "expansion", "layers", "filters")
STAGE_KEYS = frozenset(DECISION_KINDS)


def nearest_multiple(value: float, divisor: int = DIVISOR) -> int:
    """``value`` to the nearest multiple of ``divisor`` (halves up), at least ``divisor``."""
    return max(divisor, math.floor(value / divisor + 0.5) * divisor)


@dataclass(frozen=True, slots=True)
class StageSkeleton:
    """A stage of the fixed skeleton: its stride and EfficientNet-EdgeTPU-S's layers and filters."""

    stride: int
    base_layers: int
    base_filters: int

    @property
    def layer_choices(self) -> tuple[int, ...]:
        return tuple(n for n in (self.base_layers + d for d in LAYER_OFFSETS) if n >= 1)

    @property
    def filter_choices(self) -> tuple[int, ...]:
        return tuple(nearest_multiple(self.base_filters * m) for m in FILTER_MULTIPLIERS)


#: EfficientNet-EdgeTPU-S's stages: (stride, layers, output filters).
SKELETON: tuple[StageSkeleton, ...] = (
    StageSkeleton(1, 1, 24),
    StageSkeleton(2, 2, 32),
    StageSkeleton(2, 4, 48),
    StageSkeleton(2, 5, 96),
    StageSkeleton(1, 4, 144),
    StageSkeleton(2, 2, 192),
)
NUM_STAGES = len(SKELETON)
NUM_DECISIONS = NUM_STAGES * len(DECISION_KINDS)


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage's choices: ``layers`` blocks of one ``block`` kind with ``kernel``, ``expansion``, ``filters``."""

    block: str
    kernel: int
    expansion: int
    layers: int
    filters: int

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "kernel": self.kernel, "expansion": self.expansion, "layers": self.layers,
                "filters": self.filters}

    def summary(self) -> str:
        return f"{'F' if self.block == 'fused' else 'M'}{self.kernel}e{self.expansion}x{self.layers}/{self.filters}"


@dataclass(frozen=True, slots=True)
class EdgeTPUGenome:
    """Six stages of choices, plus compound-scaling coefficients (1.0: the searched network itself)."""

    stages: tuple[Stage, ...]
    depth: float = 1.0
    width: float = 1.0

    @property
    def space(self) -> str:
        return SPACE_NAME

    @property
    def scaled(self) -> bool:
        return self.depth != 1.0 or self.width != 1.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"space": SPACE_NAME, "stages": [s.to_json() for s in self.stages]}
        if self.scaled:
            data["scale"] = {"depth": float(self.depth), "width": float(self.width)}
        return data

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(SPACE_NAME, self.to_json())

    def summary(self) -> str:
        text = " ".join(s.summary() for s in self.stages)
        return f"{text} (depth {self.depth:g}, width {self.width:g})" if self.scaled else text

    def replace_stage(self, index: int, stage: Stage) -> EdgeTPUGenome:
        stages = (*self.stages[:index], stage, *self.stages[index + 1:])
        return replace(self, stages=stages)

    def base(self) -> EdgeTPUGenome:
        """The searched genome without its scaling coefficients."""
        return EdgeTPUGenome(self.stages)


def _names(keys: list[str]) -> str:
    """Unknown keys for a message, cut to 60 characters (a hostile genome may have thousands)."""
    text = ", ".join(keys)
    return text if len(text) <= 60 else text[:57] + "..."


def choices_of(stage: int, kind: str) -> tuple[Any, ...]:
    """The values decision ``kind`` may take at ``stage`` (layers and filters depend on the stage's base)."""
    skeleton = SKELETON[stage]
    if kind == "block":
        return BLOCKS
    if kind == "kernel":
        return KERNELS
    if kind == "expansion":
        return EXPANSIONS
    if kind == "layers":
        return skeleton.layer_choices
    if kind == "filters":
        return skeleton.filter_choices
    raise GenomeError(f"unknown decision {shown(kind)}; expected one of {', '.join(DECISION_KINDS)}")


def _parse_stage(data: Any, index: int) -> Stage:
    where = f"stage {index}"
    if not isinstance(data, dict):
        raise GenomeError(f"{where} must be an object with {', '.join(DECISION_KINDS)}, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - STAGE_KEYS)
    if unknown:
        raise GenomeError(f"{where} has unknown keys: {_names(unknown)}")
    missing = [k for k in DECISION_KINDS if k not in data]
    if missing:
        raise GenomeError(f"{where} is missing {', '.join(missing)}")
    values = []
    for kind in DECISION_KINDS:
        value, allowed = data[kind], choices_of(index, kind)
        if isinstance(value, bool) or value not in allowed or type(value) is not type(allowed[0]):
            extra = ""
            if kind == "filters":
                extra = f" (the base {SKELETON[index].base_filters} x 0.75, 1, 1.25)"
            elif kind == "layers":
                extra = f" (the base {SKELETON[index].base_layers} -1, 0, +1, at least 1)"
            raise GenomeError(f"{where}: {kind} must be one of {', '.join(map(str, allowed))}{extra}, got {shown(value)}")
        values.append(value)
    return Stage(*values)


def _parse_scale(data: Any) -> tuple[float, float]:
    if data is None:
        return 1.0, 1.0
    if not isinstance(data, dict):
        raise GenomeError(f"scale must be an object with depth and width, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - {"depth", "width"})
    if unknown:
        hint = " (the input resolution is the network's input_size)" if "resolution" in unknown else ""
        raise GenomeError(f"scale has unknown keys: {_names(unknown)}{hint}")
    out = []
    for key in ("depth", "width"):
        value = data.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 0 < value <= MAX_SCALE:
            raise GenomeError(f"scale {key} must be a number in (0, {MAX_SCALE:g}], got {shown(value)}")
        out.append(float(value))
    return out[0], out[1]


def parse_edgetpu(data: Any) -> EdgeTPUGenome:
    """Decode and validate an edgetpu genome's JSON data; GenomeError with what is wrong otherwise."""
    if not isinstance(data, dict):
        raise GenomeError(f"an {SPACE_NAME} genome must be a JSON object, got {type(data).__name__}")
    if data.get("space", SPACE_NAME) != SPACE_NAME:
        raise GenomeError(f"genome is of space {shown(data.get('space'))}, not {SPACE_NAME!r}")
    unknown = sorted(str(k) for k in set(data) - {"space", "stages", "scale"})
    if unknown:
        raise GenomeError(f"{SPACE_NAME} genome has unknown keys: {_names(unknown)}")
    stages = data.get("stages")
    if not isinstance(stages, list) or len(stages) != NUM_STAGES:
        got = len(stages) if isinstance(stages, list) else type(stages).__name__
        raise GenomeError(f"{SPACE_NAME} genome must have exactly {NUM_STAGES} stages, got {got}")
    depth, width = _parse_scale(data.get("scale"))
    return EdgeTPUGenome(tuple(_parse_stage(s, i) for i, s in enumerate(stages)), depth, width)


class EdgeTPUSpace:
    """Sampling, decoding and the decision view of the block space: per stage (block, kernel, expansion,
    layers, filters), as indices into ``choices_of(stage, kind)``; 30 decisions."""

    name = SPACE_NAME

    def sample(self, rng: random.Random) -> EdgeTPUGenome:
        return EdgeTPUGenome(tuple(Stage(*(rng.choice(choices_of(i, k)) for k in DECISION_KINDS))
                                   for i in range(NUM_STAGES)))

    def from_json(self, data: Any) -> EdgeTPUGenome:
        return parse_edgetpu(data)

    def decisions(self, genome: EdgeTPUGenome) -> tuple[int, ...]:
        """The searched choices; scaling coefficients are not choices (``from_decisions`` gives the base)."""
        out: list[int] = []
        for i, stage in enumerate(genome.stages):
            out += [choices_of(i, kind).index(value) for kind, value in zip(DECISION_KINDS, _values(stage), strict=True)]
        return tuple(out)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        i = len(prefix)
        if i >= NUM_DECISIONS:
            return None
        stage, slot = divmod(i, len(DECISION_KINDS))
        kind = DECISION_KINDS[slot]
        return Decision(kind, len(choices_of(stage, kind)))

    def from_decisions(self, decisions: Sequence[int]) -> EdgeTPUGenome:
        check_decisions(self, decisions)
        n = len(DECISION_KINDS)
        return EdgeTPUGenome(tuple(
            Stage(*(choices_of(i, k)[decisions[i * n + j]] for j, k in enumerate(DECISION_KINDS)))
            for i in range(NUM_STAGES)))


def _values(stage: Stage) -> tuple[Any, ...]:
    return (stage.block, stage.kernel, stage.expansion, stage.layers, stage.filters)


# --- named genomes and compound scaling -------------------------------------------------------------------

#: EfficientNet-EdgeTPU-S (tensorflow/tpu efficientnet/edgetpu block table): fused blocks in the first three
#: stages, MBConv after; 5.4 M parameters at 224x224, 1000 classes (published).
EFFICIENTNET_EDGETPU_S = EdgeTPUGenome((
    Stage("fused", 3, 4, 1, 24),
    Stage("fused", 3, 8, 2, 32),
    Stage("fused", 3, 8, 4, 48),
    Stage("mbconv", 5, 8, 5, 96),
    Stage("mbconv", 5, 8, 4, 144),
    Stage("mbconv", 5, 8, 2, 192),
))


@dataclass(frozen=True, slots=True)
class Compound:
    """Compound-scaling coefficients: layers x ``depth`` (rounded up), filters x ``width``, input ``resolution``."""

    depth: float
    width: float
    resolution: int


#: EfficientNet-EdgeTPU's own coefficients (tensorflow/tpu ``efficientnet_edgetpu_builder``): (width, depth, res)
#: S (1.0, 1.0, 224), M (1.0, 1.1, 240), L (1.2, 1.4, 300); published 5.4 M, 6.9 M and 10.6 M parameters.
COMPOUND: dict[str, Compound] = {
    "S": Compound(1.0, 1.0, 224),
    "M": Compound(1.1, 1.0, 240),
    "L": Compound(1.4, 1.2, 300),
}


def scale_genome(genome: EdgeTPUGenome, depth: float, width: float) -> EdgeTPUGenome:
    """``genome``'s stages with compound-scaling coefficients ``depth`` and ``width`` (replacing any it had:
    coefficients are relative to the searched stages, as EfficientNet's are to its baseline)."""
    scaled = EdgeTPUGenome(genome.stages, float(depth), float(width))
    return parse_edgetpu(scaled.to_json())  # validates the coefficients


# --- the network, block by block ---------------------------------------------------------------------------


def round_filters(filters: int, width: float, divisor: int = DIVISOR) -> int:
    """EfficientNet's ``round_filters``: ``filters x width`` to a multiple of ``divisor`` (at least one), never
    more than 10 % below the product."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_layers(layers: int, depth: float) -> int:
    """EfficientNet's ``round_repeats``: ``ceil(depth x layers)`` (a float product's last-bit error aside)."""
    return max(1, math.ceil(depth * layers - 1e-9))


def stem_stride(input_size: int) -> int:
    """2 at ImageNet sizes (128 px and up), 1 below: a 32x32 CIFAR image keeps its resolution through the stem."""
    return 2 if input_size >= STRIDE2_STEM_MIN_INPUT else 1


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """One block of the network: ``expanded`` channels between the expansion and the projection."""

    stage: int
    index: int
    block: str
    kernel: int
    stride: int
    in_filters: int
    expanded: int
    out_filters: int

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.in_filters == self.out_filters


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    stem_filters: int
    blocks: tuple[BlockPlan, ...]
    head_filters: int


def plan(genome: EdgeTPUGenome, *, width: float = 1.0, depth: float = 1.0) -> NetworkPlan:
    """The blocks of ``genome``'s network, its own coefficients times the network's ``width`` and ``depth``.

    A block expands its input ``expansion`` times; the first block of the first stage expands from its
    own output width, as the reference's block table (``i24_o24`` although the stem gives 32) has it.
    """
    if not (width > 0 and depth > 0 and math.isfinite(width) and math.isfinite(depth)):
        raise GenomeError(f"width and depth multipliers must be positive, got {width!r} and {depth!r}")
    w, d = genome.width * width, genome.depth * depth
    stem = round_filters(STEM_FILTERS, w)
    blocks: list[BlockPlan] = []
    cin = stem
    for i, (skeleton, stage) in enumerate(zip(SKELETON, genome.stages, strict=True)):
        out = round_filters(stage.filters, w)
        for j in range(round_layers(stage.layers, d)):
            expand_from = out if i == 0 and j == 0 else cin
            blocks.append(BlockPlan(i, j, stage.block, stage.kernel, skeleton.stride if j == 0 else 1, cin,
                                    expand_from * stage.expansion, out))
            cin = out
    return NetworkPlan(stem, tuple(blocks), round_filters(HEAD_FILTERS, w))
