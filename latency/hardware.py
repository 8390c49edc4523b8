"""The Edge TPU hardware model: device profiles, the MAC array's utilization by layer kind and shape, memories.

Public facts (Coral datasheets, the open-source libedgetpu driver, compiled models in google-coral
test_data; see latency/README.md for each source) are constants here; the few fitted values are
marked FITTED and were fitted to Coral's four published benchmark latencies only (see README).
"""

from __future__ import annotations

from dataclasses import dataclass

from latency.ir import (
    ACTIVATION,
    ADD,
    AVG_POOL,
    CONCAT,
    CONV,
    DENSE,
    DEPTHWISE,
    MAC_KINDS,
    MAX_POOL,
    MEAN,
    MUL,
    PAD,
    POINTWISE,
    RESHAPE,
    SLICE,
    Layer,
)

# -- the chip (libedgetpu beagle_chip_structures.h; Coral datasheet: 4 TOPS int8) -------------------
TILES = 16  # 4 x 4 tiles
CELLS_PER_TILE = 64  # the 64-wide cell rows that output channels map onto
LANES_PER_CELL = 4  # int8 MAC lanes per cell, fed by consecutive input channels
MACS_PER_CYCLE = TILES * CELLS_PER_TILE * LANES_PER_CELL  # 4096; x2 ops x 500 MHz = 4.1 TOPS
VECTOR_ELEMENTS_PER_CYCLE = TILES * CELLS_PER_TILE  # one element per cell per cycle for vector ops
CLOCKS_MHZ = (250, 500)  # 250: driver default (throttled runtime); 500: "max"

NARROW_MEMORY_BYTES = 3 * 1024 * 1024  # activation memory: 192 KiB x 16 tiles
PARAM_CACHE_BYTES = 8 * 1024 * 1024  # ~8 MB on-chip parameter SRAM ("recalled")
EXECUTABLE_RESERVE_BYTES = 512 * 1024  # assumption: the part of the cache the executable occupies
BIAS_BYTES_PER_CHANNEL = 8  # int32 bias + int32 per-channel requantization multiplier (assumption)

# -- utilization ------------------------------------------------------------------------------------
#: FITTED: fraction of peak a well-shaped regular/pointwise convolution sustains (pipeline stalls,
#: activation reads, weight loads). Fitted to the four calibration points with the host overheads held
#: (0.32 before depthwise layers followed the lane rule; see ``utilization``).
MAC_EFFICIENCY = 0.50
#: Depthwise convolutions have no reduction over input channels, so the array's cell rows idle: a
#: cycle-level 64x64 systolic simulation of MobileNet v1 shows ~7 % on depthwise against 43-93 %
#: (midpoint 68 %) on pointwise layers, a ratio of about 0.1 (not fitted). That array has no lanes;
#: the Edge TPU's lane rule (one input channel per lane) comes on top, in ``utilization``.
DEPTHWISE_RATIO = 0.07 / 0.68
#: Fixed cycles per layer on the chip: systolic fill/drain and instruction issue (assumption, not fitted).
LAYER_OVERHEAD_CYCLES = 128


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A host + link + module combination.

    ``invoke_ms`` is FITTED for usb3 and usb2 (to the MobileNet v1 points); pcie's is an assumption.
    ``link_bytes_per_s`` carries inputs, outputs, streamed parameters and activation spills;
    ``invoke_ms`` is the fixed per-inference cost (driver, runtime, transfer setup) on that host;
    ``cpu_macs_per_s`` / ``cpu_elements_per_s`` time the ops that fall back to the host CPU.
    """

    name: str
    description: str
    link_bytes_per_s: float
    invoke_ms: float
    clock_mhz: int
    cpu_macs_per_s: float
    cpu_elements_per_s: float


PROFILES: dict[str, DeviceProfile] = {
    # USB 3.0, x86 desktop: weight streaming measured at 0.40-0.47 GB/s (VGG16: 138 M int8 weights in 296 ms).
    "usb3": DeviceProfile("usb3", "USB Accelerator on a desktop x86 host, USB 3.0",
                          link_bytes_per_s=0.45e9, invoke_ms=0.8, clock_mhz=500,
                          cpu_macs_per_s=20e9, cpu_elements_per_s=2e9),
    # USB 2.0 on a Raspberry Pi 3 B+: about 35 MB/s effective.
    "usb2": DeviceProfile("usb2", "USB Accelerator on a Raspberry Pi 3 B+, USB 2.0",
                          link_bytes_per_s=35e6, invoke_ms=3.4, clock_mhz=500,
                          cpu_macs_per_s=1.5e9, cpu_elements_per_s=0.2e9),
    # PCIe Gen2 x1 (M.2 / mini-PCIe; Dev Board): 5 Gb/s raw, ~0.4 GB/s payload (recalled, not calibrated).
    "pcie": DeviceProfile("pcie", "M.2 / mini-PCIe module or Dev Board, PCIe Gen2 x1",
                          link_bytes_per_s=0.4e9, invoke_ms=0.5, clock_mhz=500,
                          cpu_macs_per_s=4e9, cpu_elements_per_s=0.5e9),
}


def profile(name: str) -> DeviceProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown device {name!r}; expected one of {', '.join(PROFILES)}") from None


def _fill(n: int, width: int) -> float:
    """Fraction of ``ceil(n / width)`` width-wide passes that ``n`` items keep busy."""
    if n <= 0:
        return 1.0
    passes = -(-n // width)
    return n / (passes * width)


def utilization(layer: Layer) -> float:
    """Fraction of the 4096 MAC lanes a MAC layer keeps busy, from its kind and shape.

    Output channels map onto the 64 cells of a tile (so 72 channels need two passes, the second one
    1/8 full), input channels onto the 4 lanes of a cell, and output pixels onto the 16 tiles (a 7x7
    map leaves tiles idle). Dense layers have one output pixel and spread outputs over all 1024 cells.

    The lane rule holds for depthwise layers too: each output channel reads one input channel (the
    group has one channel), so one lane of four works, and the array-level ``DEPTHWISE_RATIO`` of the
    lane-less systolic simulation applies on top. (Until the EfficientNet-EdgeTPU space, depthwise
    layers skipped the lane rule; then no shape made a regular 3x3 convolution faster than a
    depthwise-separable one with the same input and output, which the EfficientNet-EdgeTPU blog reports
    for the early, wide-spatial shapes, and the regular convolution's utilization advantage fell to
    1.6x at the late ones, against the blog's "about 3x".)
    """
    if layer.kind not in MAC_KINDS:
        return 0.0
    if layer.kind == DENSE:
        return MAC_EFFICIENCY * _fill(layer.out_channels, TILES * CELLS_PER_TILE) * _fill(layer.in_channels, LANES_PER_CELL)
    pixels = layer.out_shape[0] * layer.out_shape[1] if len(layer.out_shape) == 3 else 1
    spatial = _fill(pixels, TILES)
    channels = _fill(layer.out_channels, CELLS_PER_TILE)
    if layer.kind == DEPTHWISE:
        return MAC_EFFICIENCY * DEPTHWISE_RATIO * channels * _fill(1, LANES_PER_CELL) * spatial
    cin_per_group = max(1, layer.in_channels // max(1, layer.groups))
    assert layer.kind in (CONV, POINTWISE)
    return MAC_EFFICIENCY * channels * _fill(cin_per_group, LANES_PER_CELL) * spatial


def vector_cycles(layer: Layer) -> float:
    """Cycles of a non-MAC layer on the chip's per-cell vector units."""
    if layer.kind == RESHAPE:
        return 0.0
    if layer.kind in (AVG_POOL, MAX_POOL):
        work = layer.out_elements * layer.kernel[0] * layer.kernel[1]
    elif layer.kind == MEAN:
        work = layer.in_elements
    elif layer.kind in (ADD, MUL, CONCAT, ACTIVATION, PAD, SLICE):
        work = max(layer.out_elements, 1)
    else:
        work = layer.in_elements + layer.out_elements
    return work / VECTOR_ELEMENTS_PER_CYCLE


def chip_cycles(layer: Layer) -> tuple[float, float]:
    """(cycles, utilization) of a layer on the Edge TPU, including the fixed per-layer overhead."""
    if layer.kind == RESHAPE:
        return 0.0, 0.0
    if layer.kind in MAC_KINDS:
        util = utilization(layer)
        return layer.macs / (MACS_PER_CYCLE * util) + LAYER_OVERHEAD_CYCLES, util
    return vector_cycles(layer) + LAYER_OVERHEAD_CYCLES, 0.0


def param_bytes(layer: Layer) -> int:
    """Bytes of a layer's compiled parameters: int8 weights plus per-output-channel bias and scale."""
    if layer.weights:
        return layer.weights + BIAS_BYTES_PER_CHANNEL * layer.out_channels
    return layer.params  # folded per-channel constants of weightless layers (e.g. BN after a concat)


def cpu_seconds(layer: Layer, device: DeviceProfile) -> float:
    """Time of a layer that fell back to the host CPU."""
    if layer.kind == RESHAPE:
        return 0.0
    return layer.macs / device.cpu_macs_per_s + (layer.in_elements + layer.out_elements) / device.cpu_elements_per_s
