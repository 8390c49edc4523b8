"""Real training of genomes: CIFAR-10 and ImageNet input pipelines, the Flax/optax loop, presets, TrainEvaluator."""
