"""Search quality on NAS-Bench-201 against peer libraries, in one run: same table, protocol and seeds.

    .venv/bin/python benchmarks/search_quality.py --json             # 500 runs per method (minutes)
    .venv/bin/python benchmarks/search_quality.py --runs 20 --json   # a quick look

Protocol (NAS-Bench-201, Dong & Yang 2020, as ``amoeba bench nb201``): fitness = 12-epoch validation
accuracy on cifar10-valid, simulated time = the sum of the evaluated cells' 12-epoch training costs,
budget 12,000 s (the evaluation that would exceed it does not count), reported = the 200-epoch CIFAR-10
test accuracy of the best-fitness cell; P = 10, S = 3; run r uses seed ``seed + r`` for every method.

Methods, each driven through its own ask/tell interface:

- ``amoeba:NAME`` for every registered Amoeba algorithm (``propose`` / ``observe``), with default options;
  one that cannot run without options (``fixed``: a list of genomes to train) is listed as skipped;
- ``syne-tune:rea`` and ``syne-tune:random``: Syne Tune 0.16's ``RegularizedEvolution`` (population 10,
  sample 3) and ``RandomSearcher`` (``suggest`` / ``on_trial_complete``; REA minimises, so it is told
  minus the fitness). Syne Tune 0.16 draws random configurations from numpy's global generator, not the
  searcher's, so that generator is seeded with the run's seed too;
- ``optuna:tpe`` and ``optuna:random``: Optuna's ``TPESampler`` with its defaults (multivariate in Optuna
  5.0) and ``RandomSampler`` (``study.ask`` / ``study.tell``, in-memory storage).

Per method: mean and std of the reported accuracy, runs, mean evaluations, and ``overhead_us``: the
library's own time per evaluation, ask plus tell, in microseconds (the table look-ups excluded). JSON:
``{"methods": {"amoeba:aging": {"mean", "std", "runs", "mean_evaluations", "overhead_us"}, ...},
"skipped": {...}, "protocol": {...}, "versions": {...}, "date", "load_average", "seconds"}``.

Needs the ``bench`` extra (``pip install -e '.[bench]'``; or, without Syne Tune's heavy optional
dependencies, ``pip install optuna 'syne-tune==0.16.*' dill --no-deps`` plus optuna's own dependencies).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import spaces
from evolution import AlgorithmError, EvolutionConfig, Member, algorithm_names, rng_for
from genome.nb201 import NB201_EDGES, NB201_OPS, NB201Genome

PEERS = ("syne-tune:rea", "syne-tune:random", "optuna:tpe", "optuna:random")
KEYS = [f"e{i}" for i in range(len(NB201_EDGES))]

# ask(n) -> genome; tell(n, genome, fitness) -> None
Driver = tuple[Callable[[int], NB201Genome], Callable[[int, NB201Genome, float], None]]


def _genome(config: dict[str, Any]) -> NB201Genome:
    return NB201Genome(tuple(str(config[k]) for k in KEYS))


def amoeba_driver(name: str, seed: int, population: int, sample: int) -> Driver:
    space = spaces.get("nb201")
    algo = EvolutionConfig(population, sample, name, seed).build(space.codec, space.build_mutation())
    box = [algo.initial()]

    def ask(n: int) -> NB201Genome:
        proposal, box[0] = algo.propose(box[0], n, rng_for(seed, n))
        genome: NB201Genome = proposal.genome
        return genome

    def tell(n: int, genome: NB201Genome, fitness: float) -> None:
        box[0] = algo.observe(box[0], Member(n, genome, fitness, fitness))

    return ask, tell


def syne_tune_driver(kind: str, seed: int, population: int, sample: int) -> Driver:
    from syne_tune.config_space import choice
    from syne_tune.optimizer.schedulers.searchers.random_searcher import RandomSearcher
    from syne_tune.optimizer.schedulers.searchers.regularized_evolution import RegularizedEvolution

    config_space = {k: choice(list(NB201_OPS)) for k in KEYS}
    np.random.seed(seed)  # Syne Tune 0.16 samples random configurations from numpy's global generator
    searcher: Any = (RegularizedEvolution(config_space, population_size=population, sample_size=sample,
                                          random_seed=seed)
                     if kind == "rea" else RandomSearcher(config_space, random_seed=seed))
    configs: dict[int, dict[str, Any]] = {}

    def ask(n: int) -> NB201Genome:
        config = searcher.suggest()
        configs[n] = config
        return _genome(config)

    def tell(n: int, genome: NB201Genome, fitness: float) -> None:
        searcher.on_trial_complete(n, configs.pop(n), -fitness)  # REA keeps the lowest score

    return ask, tell


def optuna_driver(kind: str, seed: int) -> Driver:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed) if kind == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = {k: optuna.distributions.CategoricalDistribution(list(NB201_OPS)) for k in KEYS}
    trials: dict[int, Any] = {}

    def ask(n: int) -> NB201Genome:
        trial = study.ask(dists)
        trials[n] = trial
        return _genome(trial.params)

    def tell(n: int, genome: NB201Genome, fitness: float) -> None:
        study.tell(trials.pop(n), fitness)

    return ask, tell


def one_run(driver: Driver, fitness: dict[NB201Genome, float], report: dict[NB201Genome, float],
            cost: dict[NB201Genome, float], budget: float) -> tuple[float, int, float]:
    """(reported value of the best-fitness genome, evaluations, seconds spent inside ask and tell)."""
    ask, tell = driver
    spent = inside = 0.0
    best: tuple[float, NB201Genome] | None = None
    n = 0
    while True:
        t0 = time.perf_counter()
        genome = ask(n)
        inside += time.perf_counter() - t0
        spent += cost[genome]
        if spent > budget and n > 0:
            break
        value = fitness[genome]
        t0 = time.perf_counter()
        tell(n, genome, value)
        inside += time.perf_counter() - t0
        if best is None or value > best[0]:
            best = (value, genome)
        n += 1
    assert best is not None
    return report[best[1]], n, inside


def measure(method: str, runs: int, seed: int, population: int, sample: int, data: Any, protocol: Any,
            budget: float) -> dict[str, Any]:
    fitness = data.column(protocol.fitness_column)
    report = data.column(protocol.report_column)
    cost = data.column(protocol.cost_column)
    library, _, name = method.partition(":")
    values: list[float] = []
    evaluations: list[int] = []
    inside = 0.0
    for r in range(runs):
        s = seed + r
        if library == "amoeba":
            driver = amoeba_driver(name, s, population, sample)
        elif library == "syne-tune":
            driver = syne_tune_driver(name, s, population, sample)
        else:
            driver = optuna_driver(name, s)
        value, n, t = one_run(driver, fitness, report, cost, budget)
        values.append(value)
        evaluations.append(n)
        inside += t
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.pstdev(values), 4) if runs > 1 else 0.0,
        "runs": runs,
        "mean_evaluations": round(statistics.fmean(evaluations), 2),
        "overhead_us": round(1e6 * inside / max(1, sum(evaluations)), 1),
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def available_peers() -> tuple[list[str], dict[str, str]]:
    """The peer methods whose libraries import here, and why the others are missing."""
    methods: list[str] = []
    missing: dict[str, str] = {}
    for method in PEERS:
        module = "syne_tune.optimizer.schedulers.searchers.regularized_evolution" if method.startswith("syne") \
            else "optuna"
        try:
            __import__(module)
        except ImportError as exc:
            missing[method] = f"not installed ({exc.name}): pip install -e '.[bench]'"
            continue
        methods.append(method)
    return methods, missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="runs per method (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of run 0 (run r uses seed + r)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated subset, e.g. amoeba:aging,optuna:tpe (default: all)")
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    space = spaces.get("nb201")
    protocol = space.load_table()
    data = protocol.load(None)
    skipped: dict[str, str] = {}
    methods: list[str] = []
    for name in algorithm_names():
        try:
            EvolutionConfig(protocol.population, protocol.sample, name, 0).build(space.codec, space.build_mutation())
        except AlgorithmError as exc:
            skipped[f"amoeba:{name}"] = f"needs options to run: {exc}"
            continue
        methods.append(f"amoeba:{name}")
    peers, missing = available_peers()
    methods += peers
    skipped.update(missing)
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods and m not in skipped]
        if unknown:
            parser.error(f"unknown method(s) {', '.join(unknown)}; expected from {', '.join(methods)}")
        methods = [m for m in wanted if m in methods]
    started = time.perf_counter()
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for method in methods:
        t0 = time.perf_counter()
        results[method] = measure(method, args.runs, args.seed, protocol.population, protocol.sample, data,
                                  protocol, protocol.budget_seconds)
        results[method]["seconds"] = round(time.perf_counter() - t0, 1)
        if not args.json:
            r = results[method]
            print(f"{method:22s} {r['mean']:.2f} +- {r['std']:.2f}  evaluations {r['mean_evaluations']:6.1f}  "
                  f"overhead {r['overhead_us']:9.1f} us  ({r['seconds']:.0f} s)", flush=True)
    doc: dict[str, Any] = {
        "methods": results,
        "skipped": skipped,
        "protocol": {
            "table": data.path, "fitness_column": protocol.fitness_column, "report_column": protocol.report_column,
            "cost_column": protocol.cost_column, "budget_seconds": protocol.budget_seconds,
            "population": protocol.population, "sample": protocol.sample, "runs": args.runs, "seed": args.seed,
        },
        "versions": {p: _version(p) for p in ("amoeba-nas", "syne-tune", "optuna", "numpy")},
        "date": datetime.date.today().isoformat(),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if "optuna:tpe" in results:
        import optuna

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
        doc["protocol"]["optuna_tpe_multivariate"] = bool(study.sampler._is_multivariate(study))  # type: ignore[attr-defined]
    random.seed(0)  # leave the global generators as a caller would expect
    if args.json:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
