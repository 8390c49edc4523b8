"""Train one genome outside the orchestrator and print its metrics: ``python -m worker.training --json``.

``--json`` prints one object: ``genome`` (summary), ``fingerprint``, ``training`` (the resolved
settings), ``accuracy``, ``params``, ``mult_adds``, ``train_seconds``,
``compile_seconds``, ``wall_seconds`` and ``extra`` (steps, final_loss, train_accuracy,
images_per_second, stats_seconds). Errors are one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _genome(text: str, space: str, seed: int) -> Any:
    import spaces

    if text == "random":
        return spaces.get(space).sample(random.Random(seed))
    if text in spaces.named_genomes():
        return spaces.named_genome(text)
    path = Path(text)
    if path.is_file():
        return spaces.parse_genome(json.loads(path.read_text(encoding="utf-8")))
    return spaces.parse_genome(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.training", description=__doc__)
    parser.add_argument("--genome", default="random",
                        help="amoebanet-a, nasnet-a, a genome JSON file or string, or 'random' (default)")
    parser.add_argument("--space", default="nasnet", help="space of a random genome (a registered search space)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random genome and of training")
    parser.add_argument("--training", default='{"preset": "tiny"}', help="training settings as JSON")
    parser.add_argument("--data-dir", default=None, help="folder with cifar-10-python.tar.gz (or ImageNet folders)")
    parser.add_argument("--cache-dir", default=None, help="data and compilation cache (default $AMOEBA_CACHE "
                                                          "or ~/.cache/amoeba)")
    parser.add_argument("--no-compilation-cache", action="store_true", help="do not use JAX's persistent cache")
    parser.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    args = parser.parse_args(argv)

    from domain import Lease
    from domain.errors import AmoebaError
    from genome.base import canonical_json
    from worker.evaluator import EvaluationCancelled
    from worker.training.evaluator import TrainEvaluator
    from worker.training.presets import resolve_training
    from worker.trial import Trial

    try:
        training = json.loads(args.training)
        if not isinstance(training, dict):
            raise ValueError("--training must be a JSON object")
        resolved = resolve_training(training)
        genome = _genome(args.genome, args.space, args.seed)
        evaluator = TrainEvaluator(args.data_dir, cache_dir=args.cache_dir,
                                   compilation_cache=not args.no_compilation_cache, download=not args.no_download)
        trial = Trial(Lease(experiment="cli", individual_id=0, proposal_seq=0, token="", deadline=0.0, attempt=1,
                            genome_json=canonical_json(genome.to_json()), space=genome.space, seed=args.seed,
                            training=training))
        stop = threading.Event()
        start = time.perf_counter()
        metrics = evaluator.evaluate(trial, stop)
    except (ValueError, AmoebaError, OSError) as exc:
        print(f"python -m worker.training: error: {exc}", file=sys.stderr)
        return 2
    except (EvaluationCancelled, KeyboardInterrupt):
        print("python -m worker.training: interrupted", file=sys.stderr)
        return 130
    report = {
        "genome": genome.summary(), "fingerprint": genome.fingerprint, "training": resolved.to_json(),
        "accuracy": metrics.accuracy, "params": metrics.params, "mult_adds": metrics.mult_adds,
        "train_seconds": metrics.train_seconds, "compile_seconds": metrics.compile_seconds,
        "wall_seconds": time.perf_counter() - start, "extra": metrics.extra,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(f"{report['genome']}\n  accuracy {metrics.accuracy:.4f}  params {metrics.params:,}  "
              f"mult-adds {metrics.mult_adds:,}\n  compile {metrics.compile_seconds:.1f} s  "
              f"train {metrics.train_seconds:.1f} s  wall {report['wall_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
