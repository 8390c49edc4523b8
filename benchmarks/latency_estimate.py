"""Cost of pricing a genome's Edge TPU latency: the JAX-free lowering against tracing the Flax model.

    .venv/bin/python benchmarks/latency_estimate.py [--genomes 200] [--traced 3] [--json]

For each setting, ``Space.estimate`` (the orchestrator's pricing path) runs on sampled genomes (uncached, then cached) and, as the
named peer, ``nets.trace.estimate_module`` runs on ``nets.build.build_model`` of the first few of
the same genomes (the route any Flax network takes). Times are CPU seconds of this process (the
figure that stays put when other jobs share the machine) and wall seconds; both front ends must
give the same latency, which the output confirms.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import spaces
from latency import nasnet as nasnet_lowering

SETTINGS = (("nasnet", 6, 36), ("nasnet", 3, 24), ("nasnet", 2, 16), ("nb201", 5, 16))


def _timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def run(genomes: int, traced: int, seed: int) -> dict[str, Any]:
    from nets.build import build_model
    from nets.trace import estimate_module

    rows = []
    for space_name, cells, filters in SETTINGS:
        space = spaces.get(space_name)
        rng = random.Random(seed)
        sample = [space.sample(rng) for _ in range(genomes)]
        settings = space.latency_settings({"cells": cells, "filters": filters})
        spaces.clear_cache()
        nasnet_lowering._TEMPLATES.clear()

        def price(gs: list[Any] = sample, sp: Any = space, s: Any = settings) -> list[float]:
            return [sp.estimate(g, s, layers=False).latency_ms for g in gs]

        lowered, cpu_cold, wall_cold = _timed(price)
        _, cpu_hot, _ = _timed(price)
        peer = []
        for g in sample[:traced]:
            model = build_model(g, cells=cells, filters=filters, num_classes=10)
            report, cpu, wall = _timed(lambda m=model: estimate_module(m, (32, 32, 3), train=False))
            peer.append((report.latency_ms, cpu, wall))
        n = len(sample)
        rows.append({
            "space": space_name, "cells": cells, "filters": filters, "genomes": n,
            "lowering_ms_per_genome_cpu": round(cpu_cold / n * 1e3, 3),
            "lowering_ms_per_genome_wall": round(wall_cold / n * 1e3, 3),
            "cached_us_per_genome_cpu": round(cpu_hot / n * 1e6, 1),
            "traced_peer_ms_per_genome_cpu": round(sum(p[1] for p in peer) / max(1, len(peer)) * 1e3, 1),
            "traced_peer_genomes": len(peer),
            "max_relative_difference": max((abs(p[0] - x) / x for p, x in zip(peer, lowered, strict=False)),
                                           default=0.0),
            "median_latency_ms": sorted(lowered)[n // 2],
        })
    return {"settings": rows, "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", type=int, default=200)
    parser.add_argument("--traced", type=int, default=3, help="genomes per setting priced by tracing (the peer)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args()
    doc = run(args.genomes, args.traced, args.seed)
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    for r in doc["settings"]:
        print(f"{r['space']} N={r['cells']} F={r['filters']}: lowering {r['lowering_ms_per_genome_cpu']} ms/genome "
              f"(cached {r['cached_us_per_genome_cpu']} us), tracing {r['traced_peer_ms_per_genome_cpu']} ms/genome, "
              f"max difference {r['max_relative_difference']:.2e}")


if __name__ == "__main__":
    main()
