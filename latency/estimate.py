"""Latency estimation: run the hardware model over an IR graph (``estimate``), layer by layer."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from domain.errors import AmoebaError
from latency.hardware import (
    CLOCKS_MHZ,
    EXECUTABLE_RESERVE_BYTES,
    NARROW_MEMORY_BYTES,
    PARAM_CACHE_BYTES,
    DeviceProfile,
    chip_cycles,
    cpu_seconds,
    param_bytes,
    profile,
)
from latency.ir import GRAPH_INPUT, RESHAPE, UNSUPPORTED, Graph, Layer, Shape, numel

TPU = "tpu"
CPU = "cpu"


class LatencyError(AmoebaError, ValueError):
    """Bad estimation arguments (unknown device, clock, or a graph that cannot be estimated)."""


@dataclass(frozen=True, slots=True)
class LayerCost:
    """One layer's share: ``cycles`` on the chip (0 on the CPU), ``ms`` of wall time it adds, and
    ``bytes_moved`` over the host link on its behalf (streamed parameters, activation spill, and the
    tensors copied at a CPU/TPU split)."""

    name: str
    kind: str
    where: str
    cycles: float
    utilization: float
    macs: int
    param_bytes: int
    streamed_bytes: int
    bytes_moved: int
    ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "where": self.where, "cycles": round(self.cycles, 1),
            "utilization": round(self.utilization, 4), "macs": self.macs, "param_bytes": self.param_bytes,
            "streamed_bytes": self.streamed_bytes, "bytes_moved": self.bytes_moved, "ms": round(self.ms, 6),
        }


@dataclass(frozen=True, slots=True)
class LatencyReport:
    """The simulated latency of one inference (batch 1) and where the time goes."""

    graph: str
    device: str
    clock_mhz: int
    latency_ms: float
    invoke_ms: float
    transfer_ms: float
    tpu_ms: float
    cpu_ms: float
    on_chip_param_bytes: int
    streamed_bytes: int
    spill_bytes: int
    fits_on_chip: bool
    fallback_ops: tuple[str, ...]
    macs: int
    params: int
    layers: tuple[LayerCost, ...]

    def to_json(self, *, layers: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "graph": self.graph, "device": self.device, "clock_mhz": self.clock_mhz,
            "latency_ms": round(self.latency_ms, 4), "fits_on_chip": self.fits_on_chip,
            "on_chip_param_bytes": self.on_chip_param_bytes, "streamed_bytes": self.streamed_bytes,
            "spill_bytes": self.spill_bytes, "fallback_ops": list(self.fallback_ops), "macs": self.macs,
            "params": self.params,
            "breakdown_ms": {"invoke": round(self.invoke_ms, 4), "transfer": round(self.transfer_ms, 4),
                             "tpu": round(self.tpu_ms, 4), "cpu": round(self.cpu_ms, 4)},
        }
        if layers:
            doc["layers"] = [c.to_json() for c in self.layers]
        return doc


def _on_tpu(layers: tuple[Layer, ...]) -> list[bool]:
    """Which layers run on the chip: the compiler maps layers until the first unsupported one, and
    everything after it runs on the host CPU (the graph is split once, as older compilers do)."""
    split = len(layers)
    for i, layer in enumerate(layers):
        if layer.kind == UNSUPPORTED or _too_many_dims(layer):
            split = i
            break
    return [i < split for i in range(len(layers))]


def _too_many_dims(layer: Layer) -> bool:
    # The chip takes tensors of at most 3 dimensions larger than 1.
    shape = layer.out_shape
    return len(shape) > 3 and sum(1 for d in shape if d > 1) > 3


@functools.lru_cache(maxsize=65536)
def static_cost(kind: str, in_shapes: tuple[Shape, ...], out_shape: Shape, kernel: tuple[int, int], groups: int,
                 weights: int, params: int, macs: int) -> tuple[float, float, int, int]:
    """(cycles, utilization, parameter bytes, spilled activation bytes) of a layer on the chip.

    Memoized on the fields that matter: the cells of a NASNet stack repeat the same layers, so most
    look-ups hit and estimating a genome stays within a few milliseconds.
    """
    layer = Layer("", kind, (), in_shapes, out_shape, kernel, (1, 1), (1, 1), groups, weights, params, macs)
    cycles, util = chip_cycles(layer)
    working_set = layer.in_elements + layer.out_elements
    spill = max(0, working_set - NARROW_MEMORY_BYTES) if kind != RESHAPE else 0
    return cycles, util, param_bytes(layer), spill


def estimate(graph: Graph, device: str = "usb3", clock_mhz: int | None = None, *, layers: bool = True) -> LatencyReport:
    """Simulated Edge TPU latency of ``graph`` on ``device`` (usb3, usb2, pcie) at ``clock_mhz`` (250/500).

    ``layers=False`` leaves the per-layer breakdown out of the report (the totals are the same), which
    saves a third of the time where only the total matters (a search objective).
    """
    dev, clock = device_and_clock(device, clock_mhz)
    if not graph.layers:
        raise LatencyError(f"graph {graph.name!r} has no layers")
    hz = clock * 1e6
    bw = dev.link_bytes_per_s
    detail = layers
    layers_ = graph.layers
    on_tpu = _on_tpu(layers_)
    capacity = PARAM_CACHE_BYTES - EXECUTABLE_RESERVE_BYTES
    cached = streamed_total = spill_total = 0
    tpu_s = cpu_s = transfer_s = 0.0
    costs: list[LayerCost] = []
    fallback: list[str] = []
    for i, layer in enumerate(layers_):
        if on_tpu[i]:
            cycles, util, pbytes, spill = static_cost(layer.kind, layer.in_shapes, layer.out_shape, layer.kernel,
                                                       layer.groups, layer.weights, layer.params, layer.macs)
            # Parameters are cached in layer order while they fit; the rest stream in every inference,
            # overlapped with the layer's compute (the DMA runs ahead of the array).
            streamed = 0
            if pbytes and cached + pbytes <= capacity:
                cached += pbytes
            else:
                streamed = pbytes
            seconds = cycles / hz
            if streamed:
                seconds = max(seconds, streamed / bw)
            if spill:
                seconds += 2 * spill / bw
            streamed_total += streamed
            spill_total += spill
            tpu_s += seconds
            if detail:
                costs.append(LayerCost(layer.name, layer.kind, TPU, cycles, util, layer.macs, pbytes, streamed,
                                       streamed + 2 * spill, seconds * 1e3))
        else:
            pbytes = param_bytes(layer)
            # Tensors produced on the chip and consumed here cross the link back to the host.
            crossing = sum(numel(layers_[r].out_shape) for r in layer.inputs if r != GRAPH_INPUT and on_tpu[r])
            seconds = cpu_seconds(layer, dev) + crossing / bw
            cpu_s += seconds
            transfer_s += crossing / bw
            if layer.kind != RESHAPE:
                fallback.append(layer.op or layer.kind)
            if detail:
                costs.append(LayerCost(layer.name, layer.kind, CPU, 0.0, 0.0, layer.macs, pbytes, 0, crossing,
                                       seconds * 1e3))
    any_tpu = any(on_tpu)
    io_bytes = 0
    if any(on_tpu[i] and GRAPH_INPUT in layer.inputs for i, layer in enumerate(layers_)):
        io_bytes += numel(graph.input_shape)  # the quantized input tensor goes to the chip
    if on_tpu[-1]:
        io_bytes += numel(graph.output_shape)
    io_s = io_bytes / bw
    invoke_s = dev.invoke_ms / 1e3 if any_tpu else 0.0
    total_s = invoke_s + io_s + tpu_s + cpu_s
    return LatencyReport(
        graph=graph.name, device=dev.name, clock_mhz=clock, latency_ms=total_s * 1e3, invoke_ms=invoke_s * 1e3,
        transfer_ms=(io_s + transfer_s) * 1e3, tpu_ms=tpu_s * 1e3, cpu_ms=(cpu_s - transfer_s) * 1e3,
        on_chip_param_bytes=cached, streamed_bytes=streamed_total, spill_bytes=spill_total,
        fits_on_chip=streamed_total == 0 and not fallback, fallback_ops=tuple(dict.fromkeys(fallback)),
        macs=graph.total_macs(), params=graph.total_params(), layers=tuple(costs),
    )


def device_and_clock(device: str, clock_mhz: int | None) -> tuple[DeviceProfile, int]:
    """The device profile and the clock to use (the profile's own when None); LatencyError when unknown."""
    try:
        dev: DeviceProfile = profile(device)
    except ValueError as exc:
        raise LatencyError(str(exc)) from None
    clock = dev.clock_mhz if clock_mhz is None else clock_mhz
    if clock not in CLOCKS_MHZ:
        raise LatencyError(f"clock must be one of {', '.join(map(str, CLOCKS_MHZ))} MHz, got {clock}")
    return dev, clock
