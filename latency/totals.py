"""Additive chip costs of groups of layers, and the latency report they make: the spaces' fast estimates
(``latency.nasnet``, ``latency.nb201``) price a genome from memoized per-cell totals with these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from latency.estimate import LatencyReport, device_and_clock, static_cost
from latency.hardware import EXECUTABLE_RESERVE_BYTES, PARAM_CACHE_BYTES
from latency.ir import Layer


@dataclass(frozen=True, slots=True)
class ChipTotals:
    """Additive chip costs of a group of layers that all run on the chip with cached parameters."""

    cycles: float = 0.0
    spill: int = 0
    param_bytes: int = 0
    macs: int = 0
    params: int = 0

    def __add__(self, other: ChipTotals) -> ChipTotals:
        return ChipTotals(self.cycles + other.cycles, self.spill + other.spill, self.param_bytes + other.param_bytes,
                          self.macs + other.macs, self.params + other.params)

    def times(self, n: int) -> ChipTotals:
        """The totals of ``n`` copies of this group (cells repeated on the same input shape)."""
        return ChipTotals(self.cycles * n, self.spill * n, self.param_bytes * n, self.macs * n, self.params * n)

    @property
    def fits_on_chip(self) -> bool:
        """Whether every parameter byte is cached on the chip (else layer order matters: the full path)."""
        return self.param_bytes <= PARAM_CACHE_BYTES - EXECUTABLE_RESERVE_BYTES


def totals(layers: Iterable[Layer]) -> ChipTotals:
    """The summed chip costs of ``layers`` (each layer's cost is memoized in ``static_cost``)."""
    cycles = 0.0
    spill = pbytes = macs = params = 0
    for layer in layers:
        c, _, p, s = static_cost(layer.kind, layer.in_shapes, layer.out_shape, layer.kernel, layer.groups,
                                  layer.weights, layer.params, layer.macs)
        cycles += c
        spill += s
        pbytes += p
        macs += layer.macs
        params += layer.params
    return ChipTotals(cycles, spill, pbytes, macs, params)


def report_from_totals(graph: str, total: ChipTotals, io_elements: int, device: str,
                       clock_mhz: int | None) -> LatencyReport:
    """The report ``estimate(..., layers=False)`` gives for a network that runs wholly on the chip with its
    parameters cached: one invoke, ``io_elements`` int8 values over the link (input and output), the
    layers' cycles and their activation spill there and back."""
    dev, clock = device_and_clock(device, clock_mhz)
    hz, bw = clock * 1e6, dev.link_bytes_per_s
    io_s = io_elements / bw
    tpu_s = total.cycles / hz + 2 * total.spill / bw
    invoke_s = dev.invoke_ms / 1e3
    return LatencyReport(
        graph=graph, device=dev.name, clock_mhz=clock, latency_ms=(invoke_s + io_s + tpu_s) * 1e3,
        invoke_ms=invoke_s * 1e3, transfer_ms=io_s * 1e3, tpu_ms=tpu_s * 1e3, cpu_ms=0.0,
        on_chip_param_bytes=total.param_bytes, streamed_bytes=0, spill_bytes=total.spill, fits_on_chip=True,
        fallback_ops=(), macs=total.macs, params=total.params, layers=(),
    )
