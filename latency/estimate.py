"""Latency estimation: run the hardware model over an IR graph; ``estimate_genome`` is the cached fast path."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from genome import Genome, NASNetGenome
from genome.nasnet import Cell
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


class LatencyError(ValueError):
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
def _static_cost(kind: str, in_shapes: tuple[Shape, ...], out_shape: Shape, kernel: tuple[int, int], groups: int,
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
    try:
        dev: DeviceProfile = profile(device)
    except ValueError as exc:
        raise LatencyError(str(exc)) from None
    clock = dev.clock_mhz if clock_mhz is None else clock_mhz
    if clock not in CLOCKS_MHZ:
        raise LatencyError(f"clock must be one of {', '.join(map(str, CLOCKS_MHZ))} MHz, got {clock}")
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
            cycles, util, pbytes, spill = _static_cost(layer.kind, layer.in_shapes, layer.out_shape, layer.kernel,
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


_CACHE_SIZE = 4096
_cache: OrderedDict[tuple[Any, ...], LatencyReport] = OrderedDict()
_cache_lock = threading.Lock()


def estimate_genome(
    genome: Genome, *, cells: int, filters: int, input_size: int = 32, num_classes: int = 10,
    device: str = "usb3", clock_mhz: int | None = None, dataset: str | None = None, layers: bool = True,
) -> LatencyReport:
    """Latency of the network a genome describes (lowered without JAX), memoized on its fingerprint.

    NASNet: N = ``cells``, F = ``filters``, ``dataset`` picks the stem (default: by input size). NB201:
    ``cells`` per stage and ``filters`` stage-1 channels (5 and 16 in the benchmark). Raises
    ``LoweringError`` for bad sizes and ``LatencyError`` for a bad device or clock. ``layers=False``
    (the objective path) leaves out the per-layer breakdown and, for NASNet genomes whose parameters
    fit on chip, sums memoized per-cell totals instead of lowering every layer (the same result).
    """
    from latency.lower import lower_genome

    key = (genome.space, genome.fingerprint, cells, filters, input_size, num_classes, device, clock_mhz, dataset, layers)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    report = None
    if not layers and isinstance(genome, NASNetGenome):
        report = _estimate_nasnet_totals(genome, cells, filters, input_size, num_classes, device, clock_mhz, dataset)
    if report is None:
        graph = lower_genome(genome, cells=cells, filters=filters, input_size=input_size, num_classes=num_classes,
                             dataset=dataset)
        report = estimate(graph, device=device, clock_mhz=clock_mhz, layers=layers)
    with _cache_lock:
        _cache[key] = report
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return report


@dataclass(frozen=True, slots=True)
class _Totals:
    """Additive chip costs of a group of layers that all run on the chip with cached parameters."""

    cycles: float = 0.0
    spill: int = 0
    param_bytes: int = 0
    macs: int = 0
    params: int = 0

    def __add__(self, other: _Totals) -> _Totals:
        return _Totals(self.cycles + other.cycles, self.spill + other.spill, self.param_bytes + other.param_bytes,
                       self.macs + other.macs, self.params + other.params)


def _totals(graph: Graph) -> _Totals:
    cycles = 0.0
    spill = pbytes = 0
    for layer in graph.layers:
        c, _, p, s = _static_cost(layer.kind, layer.in_shapes, layer.out_shape, layer.kernel, layer.groups,
                                  layer.weights, layer.params, layer.macs)
        cycles += c
        spill += s
        pbytes += p
    return _Totals(cycles, spill, pbytes, graph.total_macs(), graph.total_params())


_cell_totals: dict[tuple[Any, ...], tuple[_Totals, Shape, bool, bool]] = {}
_CELL_TOTALS_LIMIT = 4096


def _estimate_nasnet_totals(genome: NASNetGenome, cells: int, filters: int, input_size: int, num_classes: int,
                            device: str, clock_mhz: int | None, dataset: str | None) -> LatencyReport | None:
    """The latency of a NASNet genome from per-cell totals (memoized on the cell, its input shapes and
    filters), or None when its parameters do not all fit on chip (then layer order matters: the full path)."""
    from latency.lower import (
        PREVPREV_PLACEHOLDER,
        check_args,
        lower_cell,
        lower_stem_and_head,
        nasnet_skeleton,
        resolve_stem,
    )

    check_args(cells, filters, input_size, num_classes)
    stem = resolve_stem(input_size, {None: None, "cifar10": "cifar", "imagenet": "imagenet"}.get(dataset, dataset))
    try:
        dev = profile(device)
    except ValueError as exc:
        raise LatencyError(str(exc)) from None
    clock = dev.clock_mhz if clock_mhz is None else clock_mhz
    if clock not in CLOCKS_MHZ:
        raise LatencyError(f"clock must be one of {', '.join(map(str, CLOCKS_MHZ))} MHz, got {clock}")
    # A tensor is (identity, shape): the identity tells a cell whose two inputs are one tensor, and
    # liveness is tracked per tensor (a cell that never reads state 0 leaves the cell before last dead).
    Tensor = tuple[int, Shape]
    ids = iter(range(1 << 30))
    done: list[tuple[int, int, int, _Totals, bool, bool]] = []  # (out, h_prev, h_prevprev, totals, reads...)

    def cell_fn(name: str, cell: Cell, h_prev: Tensor, h_prevprev: Tensor, f: int, reduction: bool) -> Tensor:
        same = h_prev[0] == h_prevprev[0]
        key = (cell, reduction, h_prev[1], h_prevprev[1], f, same)
        found = _cell_totals.get(key)
        if found is None:
            graph = lower_cell(cell, reduction, h_prev[1], h_prevprev[1], f, same)
            reads_prev = any(GRAPH_INPUT in layer.inputs for layer in graph.layers)
            reads_pp = reads_prev if same else any(layer.name == PREVPREV_PLACEHOLDER for layer in graph.layers)
            found = (_totals(graph), graph.output_shape, reads_prev, reads_pp)
            if len(_cell_totals) >= _CELL_TOTALS_LIMIT:
                _cell_totals.clear()
            _cell_totals[key] = found
        out = next(ids)
        done.append((out, h_prev[0], h_prevprev[0], found[0], found[2], found[3]))
        return (out, found[1])

    stem_graph, _, stem_shape = lower_stem_and_head(stem, filters, input_size, (1, 1, 1), num_classes)
    stem_id = next(ids)
    last = nasnet_skeleton(genome, cells, filters, stem, lambda *_: (stem_id, stem_shape), cell_fn, lambda t: t)
    _, head_graph, _ = lower_stem_and_head(stem, filters, input_size, last[1], num_classes)
    live = {last[0]}
    total = _totals(head_graph)
    for out, prev_id, pp_id, cell_totals, reads_prev, reads_pp in reversed(done):
        if out in live:
            total = total + cell_totals
            if reads_prev:
                live.add(prev_id)
            if reads_pp:
                live.add(pp_id)
    if stem_id not in live:
        return None  # the output does not depend on the input; let the full path say what remains
    total = total + _totals(stem_graph)
    if total.param_bytes > PARAM_CACHE_BYTES - EXECUTABLE_RESERVE_BYTES:
        return None
    hz, bw = clock * 1e6, dev.link_bytes_per_s
    io_s = (numel((input_size, input_size, 3)) + num_classes) / bw
    tpu_s = total.cycles / hz + 2 * total.spill / bw
    invoke_s = dev.invoke_ms / 1e3
    return LatencyReport(
        graph=f"nasnet N={cells} F={filters} {input_size}x{input_size}", device=dev.name, clock_mhz=clock,
        latency_ms=(invoke_s + io_s + tpu_s) * 1e3, invoke_ms=invoke_s * 1e3, transfer_ms=io_s * 1e3,
        tpu_ms=tpu_s * 1e3, cpu_ms=0.0, on_chip_param_bytes=total.param_bytes, streamed_bytes=0,
        spill_bytes=total.spill, fits_on_chip=True, fallback_ops=(), macs=total.macs, params=total.params, layers=(),
    )


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
    _cell_totals.clear()
