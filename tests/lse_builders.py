"""Builders for the Large-Scale Evolution tests: a stand-in accuracy of lse genomes, and a whole ``pairwise``
experiment driven through the service with several workers in flight (not a test module)."""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

from domain import ExperimentSpec, Lease, Metrics, WorkerInfo
from genome.lse import BN_RELU, LSEGenome, parse_lse
from orchestrator.service import OrchestratorService


def lse_accuracy(genome_json: str) -> float:
    """A deterministic stand-in for training: convolutions and batch norm help, a learning rate far from
    0.05 hurts, plus a little jitter from the genome's bytes (so ties are rare)."""
    g: LSEGenome = parse_lse(json.loads(genome_json))
    convs = len(g.convolutions())
    bns = sum(1 for v in g.vertices if v.activation == BN_RELU)
    jitter = int(hashlib.sha256(genome_json.encode()).hexdigest()[:6], 16) / 16**6
    score = 0.1 + 0.04 * min(convs, 6) + 0.01 * min(bns, 4) - 0.02 * abs(math.log2(g.learning_rate / 0.05))
    return max(0.0, min(1.0, score + 0.02 * jitter))


def lse_spec(name: str = "lse", *, population: int = 6, evaluations: int = 40, seed: int = 11,
             options: dict[str, Any] | None = None) -> ExperimentSpec:
    return ExperimentSpec(name=name, space="lse", population_size=population, sample_size=2, evaluations=evaluations,
                          seed=seed, algorithm="pairwise", algorithm_options=dict(options or {}), lease_timeout_s=30.0)


def run_pairwise(service: OrchestratorService, spec: ExperimentSpec, *, workers: int = 3, fail_every: int = 0,
                 rng_seed: int = 0) -> list[int]:
    """Run ``spec`` to completion with ``workers`` leases held at once, finished in random order (every
    ``fail_every``-th one fails for good when set); the proposal numbers in completion order."""
    service.create_experiment(spec)
    rng = random.Random(rng_seed)
    held: list[tuple[Lease, WorkerInfo]] = []
    completed: list[int] = []
    finished = 0
    while True:
        while len(held) < workers:
            worker = WorkerInfo(f"w{len(held)}", "host", "table")
            got = service.lease(worker, spec.name)
            if not isinstance(got, Lease):
                break
            held.append((got, worker))
        if not held:
            return completed
        lease, worker = held.pop(rng.randrange(len(held)))
        finished += 1
        if fail_every and finished % fail_every == 0:
            service.fail(lease.individual_id, lease.token, worker.worker_id, "out of memory")
            continue
        service.report(lease.individual_id, lease.token, worker.worker_id,
                       Metrics(accuracy=lse_accuracy(lease.genome_json)))
        completed.append(lease.proposal_seq)
