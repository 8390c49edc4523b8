"""``python -m export``: export one genome's network without a database - randomly initialised or briefly
trained here - and report on it (what the README's measured figures come from).

    python -m export --genome amoebanet-a --cells 1 --filters 8 --image-size 16 --data CIFAR \\
        --train-steps 60 --out tiny.tflite [--device usb3] [--json]

``--data`` is a CIFAR-10 python archive or folder. Training uses the worker's own step
(``worker.training.train``) with the ``tiny`` preset's optimizer settings on the training split;
``--train-steps 0`` exports the initial variables. Besides ``export_individual``'s report it prints the
genome lowering's simulated latency next to the file's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from domain.errors import AmoebaError


def _train(genome: Any, network: dict[str, Any], images: np.ndarray, labels: np.ndarray, steps: int, seed: int) -> Any:
    import jax
    import jax.numpy as jnp

    from nets.build import build_model, init_variables
    from nets.layers import conv_impl
    from worker.training.augment import CIFAR_MEAN, CIFAR_STD
    from worker.training.presets import resolve_training
    from worker.training.train import init_state, make_optimizer, make_train_step

    size = images.shape[1]
    model = build_model(genome, network, num_classes=10, bn_momentum=0.9)
    if steps == 0:
        with conv_impl("xla"):
            return init_variables(model, (1, size, size, 3), seed)
    config = resolve_training({"preset": "tiny"})
    tx = make_optimizer(config, steps)
    with conv_impl("xla"):
        state = jax.jit(lambda k: init_state(model, tx, k, jnp.zeros((1, size, size, 3))))(jax.random.key(seed))
        step = jax.jit(make_train_step(model, tx, config, 10, CIFAR_MEAN, CIFAR_STD))
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            idx = np.sort(rng.choice(len(labels), config.batch_size, replace=False))
            state, _ = step(state, images[idx], labels[idx], jax.random.key(seed + 1))
    return {"params": jax.device_get(state.params), "batch_stats": jax.device_get(state.batch_stats)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--genome", required=True, help="a named genome, genome JSON or NB201 arch string")
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--data", required=True, help="CIFAR-10 python archive or extracted folder")
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--representative", type=int, default=256)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="usb3")
    parser.add_argument("--out", required=True)
    parser.add_argument("--training-form", action="store_true",
                        help="convert the network as trained (strided slices, SUM), not its Edge TPU form")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        import spaces
        from export.data import cifar_export_data
        from export.edgetpu import check
        from export.flatbuf import read_tflite
        from export.run import export_individual, report_lines
        from latency import estimate
        from worker.training.augment import resize_area
        from worker.training.data_cifar import load_cifar10

        if args.genome in spaces.named_genomes():
            genome = spaces.named_genome(args.genome)
        elif args.genome.endswith(".json"):
            with open(args.genome, encoding="utf-8") as handle:
                genome = spaces.parse_genome(handle.read())
        else:
            genome = spaces.parse_genome(args.genome)
        space = spaces.get(genome.space)
        network = {k: v for k, v in (("cells", args.cells), ("filters", args.filters)) if k in space.network}
        train = load_cifar10(args.data, "final").train
        variables = _train(genome, network, resize_area(train.images, args.image_size), train.labels,
                           args.train_steps, args.seed)
        data = cifar_export_data(args.data, image_size=args.image_size, representative=args.representative,
                                 test_limit=args.test_limit)
        doc = export_individual(genome, network, variables, data, args.out, args.device,
                                edgetpu=not args.training_form)
        lowered = estimate(space.graph(genome, **network, input_size=args.image_size, num_classes=10), args.device)
        doc["lowering_latency_ms"] = round(lowered.latency_ms, 4)
        doc["train_steps"] = args.train_steps
    except (AmoebaError, OSError) as exc:
        print(f"python -m export: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for line in report_lines(doc, check(read_tflite(doc["out"]))):
        print(line)
    print(f"genome lowering's simulated latency ({args.device}): {doc['lowering_latency_ms']:.3f} ms "
          f"(the file's is {100 * (doc['latency_ms'] / doc['lowering_latency_ms'] - 1):+.2f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
