"""Training throughput of the amoebanet-search child in Amoeba's Flax worker against the same network in PyTorch.

Usage (see the README's "Training throughput" section)::

    .venv/bin/python benchmarks/train_throughput.py --json
    .venv/bin/python benchmarks/train_throughput.py --layers --json     # per-layer XLA / fast / PyTorch

Default: AmoebaNet-A cells, N = 3, F = 24, batch 64 of 32x32 CIFAR-shaped images, the worker's own
SGD-momentum train step (``worker.training.train.make_train_step``: augmentation, forward, BN in
training mode, backward, weight decay, update) against ``benchmarks/torch_nasnet.py`` with the same
cells, optimizer and thread count, in the same process. The frameworks' steps are interleaved and
each one's median step time is reported, so both see the same background load. Compile seconds are
XLA's (ahead-of-time ``lower().compile()`` of the train step); PyTorch runs eagerly.

JSON schema of the default mode (stable)::

    {"benchmark": "train_throughput", "device": "cpu"|"gpu"|..., "threads": int, "genome": str,
     "cells": int, "filters": int, "batch": int, "image_size": int, "steps": int, "conv_impl": "fast"|"xla",
     "malloc_tuning": bool,
     "amoeba": {"images_per_s": float, "step_ms": float (median), "compile_s": float, "params": int},
     "torch": {"images_per_s": float, "step_ms": float, "params": int} | null,
     "ratio": float | null}          # amoeba images/s over torch images/s

``--layers`` prints {"benchmark": "conv_layers", "device", "threads", "batch", "layers": [{"layer",
"xla_ms", "fast_ms", "torch_ms"}...]}: forward + input and weight gradient of one layer, best of
``--steps`` runs, each framework on the same shapes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genome", default="amoebanet-a",
                   help="a named genome (amoebanet-a, nasnet-a) or random:SEED for a random NASNet genome")
    p.add_argument("--cells", type=int, default=3, help="N, normal cells per stack (default 3)")
    p.add_argument("--filters", type=int, default=24, help="F, filters of the first stack (default 24)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per framework (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per framework first")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU cores for both frameworks (pins the process; default: all it may use)")
    p.add_argument("--conv-impl", choices=("auto", "xla", "fast"), default="auto",
                   help="nets.fastconv implementation for Amoeba (default auto: fast on CPU)")
    p.add_argument("--no-torch", action="store_true", help="measure Amoeba alone")
    p.add_argument("--malloc-tuning", action="store_true",
                   help="rerun under glibc malloc settings that keep freed memory for reuse (both frameworks)")
    p.add_argument("--layers", action="store_true", help="per-layer convolution timings instead of training")
    p.add_argument("--json", action="store_true", help="print one JSON object (schema in the module docstring)")
    args = p.parse_args(argv)
    for name in ("cells", "filters", "batch", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.image_size < 8:
        p.error("--image-size must be at least 8")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    if args.threads is not None and not 1 <= args.threads <= len(os.sched_getaffinity(0)):
        p.error(f"--threads must be between 1 and {len(os.sched_getaffinity(0))}")
    return args


def _pin_threads(threads: int | None) -> int:
    """Restrict the process to ``threads`` cores before JAX or PyTorch start their thread pools."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads is not None:
        cpus = cpus[:threads]
        os.sched_setaffinity(0, cpus)
    return len(cpus)


def _genome(spec: str) -> Any:
    import spaces

    if spec.startswith("random:"):
        import random

        return spaces.get("nasnet").sample(random.Random(int(spec.split(":", 1)[1])))
    return spaces.named_genome(spec)


def measure(runners: dict[str, Callable[[], None]], warmup: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each runner, the runners' steps interleaved (A, B, A, B, ...).

    Interleaving exposes every framework to the same background load on a shared machine; the median
    ignores a step that a burst of other work slowed down. Each runner blocks until its step is done.
    """
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(steps):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


# -- Amoeba (Flax / XLA) ----------------------------------------------------------------------------


def prepare_amoeba(args: argparse.Namespace, genome: Any, dtype: str = "float32"
                   ) -> tuple[Callable[[], None], Callable[[], float], dict[str, Any]]:
    """(one train step, the last loss, facts) for Amoeba's worker step; compiles it (timed).

    ``args`` needs ``cells``, ``filters``, ``batch`` and ``image_size``; ``dtype`` is the training
    setting of that name (``"bfloat16"``: bfloat16 compute, float32 parameters, as on a GPU worker).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nets.build import build_model, count_params, init_variables
    from worker.training.augment import CIFAR_MEAN, CIFAR_STD
    from worker.training.loop import PRNG_IMPL
    from worker.training.presets import resolve_training
    from worker.training.train import TrainState, make_optimizer, make_train_step

    config = resolve_training({"preset": "amoebanet-search", "cells": args.cells, "filters": args.filters,
                               "batch_size": args.batch, "dtype": dtype})
    model = build_model(genome, cells=args.cells, filters=args.filters, num_classes=10,
                        dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
    tx = make_optimizer(config, total_steps=1000)
    shape = (args.batch, args.image_size, args.image_size, 3)
    variables = init_variables(model, (1, *shape[1:]))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                       batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, (args.batch,), dtype=np.int32))
    key = jax.random.key(0, impl=PRNG_IMPL)

    start = time.perf_counter()
    step = jax.jit(make_train_step(model, tx, config, 10, CIFAR_MEAN, CIFAR_STD),
                   donate_argnums=0).lower(state, images, labels, key).compile()
    compile_s = time.perf_counter() - start

    holder = [state]
    last: list[Any] = [None]

    def run() -> None:
        holder[0], metrics = step(holder[0], images, labels, key)
        last[0] = jax.block_until_ready(metrics)

    return run, lambda: float(last[0]["loss"]), {"compile_s": compile_s, "params": count_params(variables)}


# -- PyTorch ------------------------------------------------------------------------------------------


def prepare_torch(args: argparse.Namespace, genome: Any, threads: int, device: str = "cpu",
                  precision: str = "float32") -> tuple[Callable[[], None], Callable[[], float], dict[str, Any]]:
    """(one train step, the last loss, facts) for the PyTorch peer.

    ``device`` is a torch device (``"cpu"``, ``"cuda:0"``); ``precision`` ``"bfloat16"`` runs forward and
    loss under ``torch.autocast`` in bfloat16 (float32 parameters and optimizer, as Amoeba's bfloat16).
    """
    import contextlib

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from torch_nasnet import TorchNASNet, count_params

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the warm-up steps pick each convolution's algorithm
    model = TorchNASNet(genome, args.cells, args.filters, image_size=args.image_size).to(dev)
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.024, momentum=0.9)
    gen = torch.Generator(device=dev).manual_seed(0)
    images = torch.randint(0, 256, (args.batch, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=gen,
                           device=dev)
    labels = torch.randint(0, 10, (args.batch,), generator=gen, device=dev)
    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616], device=dev).view(1, 3, 1, 1)
    size = args.image_size
    autocast: Callable[[], Any] = ((lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if precision == "bfloat16"
                                   else contextlib.nullcontext)

    def augment(x: torch.Tensor) -> torch.Tensor:
        # The same work as the Flax step's augmentation: 4-pixel zero pad, random crop, random flip.
        padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
        off = torch.randint(0, 9, (x.shape[0], 2), generator=gen, device=dev)
        rows = (off[:, 0:1] + torch.arange(size, device=dev)).view(-1, 1, size, 1).expand(-1, 3, size, size + 8)
        x = torch.gather(padded, 2, rows)
        cols = (off[:, 1:2] + torch.arange(size, device=dev)).view(-1, 1, 1, size).expand(-1, 3, size, size)
        x = torch.gather(x, 3, cols)
        flip = torch.rand(x.shape[0], generator=gen, device=dev) < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)

    losses: list[float] = []

    def run() -> None:
        x = (augment(images).float() / 255.0 - mean) / std
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))  # waits for the step (on a GPU too), as Amoeba's step does

    return run, lambda: losses[-1], {"params": count_params(model)}


# -- per-layer convolutions -----------------------------------------------------------------------------

#: (name, kind, kernel, stride, dilation, channels): the shapes of the issue (a 64x32x32 batch, 48
#: channels) plus the models' other kernels.
LAYERS = [
    ("conv3x3", "conv", (3, 3), 1, 1, 48),
    ("conv3x3_s2", "conv", (3, 3), 2, 1, 48),
    ("conv1x1", "conv", (1, 1), 1, 1, 48),
    ("conv1x7", "conv", (1, 7), 1, 1, 48),
    ("depthwise3x3", "depthwise", (3, 3), 1, 1, 48),
    ("depthwise3x3_s2", "depthwise", (3, 3), 2, 1, 48),
    ("depthwise3x3_dil2", "depthwise", (3, 3), 1, 2, 48),
    ("depthwise5x5", "depthwise", (5, 5), 1, 1, 48),
    ("depthwise7x7", "depthwise", (7, 7), 1, 1, 48),
]


def bench_layers(args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    import numpy as np

    try:
        import torch
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, kind, kernel, stride, dilation, channels in LAYERS:
        x = rng.standard_normal((args.batch, args.image_size, args.image_size, channels)).astype(np.float32)
        k = (rng.standard_normal((*kernel, 1 if kind == "depthwise" else channels, channels)) * 0.1).astype(np.float32)
        row: dict[str, Any] = {"layer": name}
        for impl in ("xla", "fast"):
            row[f"{impl}_ms"] = _jax_layer_ms(x, k, kind, stride, dilation, impl, args.steps)
        row["torch_ms"] = _torch_layer_ms(torch, x, k, kind, stride, dilation, args.steps) if torch else None
        rows.append(row)
        if not args.json:
            print(" ".join(f"{key}={_fmt(value)}" for key, value in row.items()), flush=True)
    return rows


def _jax_layer_ms(x_np: Any, k_np: Any, kind: str, stride: int, dilation: int, impl: str, runs: int) -> float:
    """Forward plus input and weight gradient of one nets.fastconv layer, best of ``runs``, in ms."""
    import jax
    import jax.numpy as jnp

    from nets import fastconv

    fn = fastconv.depthwise_conv2d if kind == "depthwise" else fastconv.conv2d

    def loss(x: jax.Array, k: jax.Array) -> jax.Array:
        return jnp.sum(fn(x, k, (stride, stride), "SAME", (dilation, dilation), impl=impl) ** 2)  # type: ignore[arg-type]

    grad = jax.jit(jax.grad(loss, (0, 1)))
    x, k = jnp.asarray(x_np), jnp.asarray(k_np)
    return 1e3 * _best_of(lambda: jax.block_until_ready(grad(x, k)), runs)


def _torch_layer_ms(torch: Any, x_np: Any, k_np: Any, kind: str, stride: int, dilation: int, runs: int) -> float:
    """The same layer in PyTorch (NCHW, symmetric padding), best of ``runs``, in ms."""
    xt = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    wt = torch.from_numpy(k_np).permute(3, 2, 0, 1).contiguous().requires_grad_(True)
    groups = x_np.shape[3] if kind == "depthwise" else 1
    kh, kw = k_np.shape[:2]
    pad = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)

    def step() -> None:
        y = torch.nn.functional.conv2d(xt, wt, None, stride, pad, dilation, groups)
        (y * y).sum().backward()
        xt.grad = None
        wt.grad = None

    return 1e3 * _best_of(step, runs)


def _best_of(fn: Callable[[], Any], runs: int) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


#: glibc settings that stop malloc from returning large blocks to the kernel after each use. XLA and
#: PyTorch allocate tens of MB per activation on every step; by default each such block is a fresh
#: mmap whose pages fault in again (measured here: 278 ms to write a fresh 100 MB array with JAX
#: against 11 ms with these settings).
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 36),
                 "MALLOC_TOP_PAD_": str(1 << 29), "MALLOC_ARENA_MAX": "1"}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.malloc_tuning and any(os.environ.get(k) != v for k, v in MALLOC_TUNING.items()):
        # glibc reads these once at start-up, so the process must start again with them.
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()),
                                   *(sys.argv[1:] if argv is None else argv)], {**os.environ, **MALLOC_TUNING})
    threads = _pin_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    os.environ["AMOEBA_CONV_IMPL"] = args.conv_impl
    import jax

    from nets.fastconv import resolve_impl

    device = jax.default_backend()
    if args.layers:
        rows = bench_layers(args, threads)
        if args.json:
            print(json.dumps({"benchmark": "conv_layers", "device": device, "threads": threads, "batch": args.batch,
                              "image_size": args.image_size, "layers": rows}))
        return 0
    genome = _genome(args.genome)
    runners, losses, facts = {}, {}, {}
    runners["amoeba"], losses["amoeba"], facts["amoeba"] = prepare_amoeba(args, genome)
    if not args.json:
        print(f"amoeba: compiled the train step in {facts['amoeba']['compile_s']:.1f} s", flush=True)
    if not args.no_torch:
        try:
            runners["torch"], losses["torch"], facts["torch"] = prepare_torch(args, genome, threads)
        except ImportError:
            raise SystemExit("amoeba: error: PyTorch is not installed; pip install 'amoeba-nas[bench]' "
                             "(or pass --no-torch)") from None
    seconds = measure(runners, args.warmup, args.steps)
    for name in runners:
        if not math.isfinite(losses[name]()):
            raise SystemExit(f"amoeba: error: the {name} train step produced a non-finite loss")
        facts[name].update(images_per_s=args.batch / seconds[name], step_ms=seconds[name] * 1e3)
    peer = facts.get("torch")
    result = {
        "benchmark": "train_throughput", "device": device, "threads": threads, "genome": args.genome,
        "cells": args.cells, "filters": args.filters, "batch": args.batch, "image_size": args.image_size,
        "steps": args.steps, "conv_impl": resolve_impl(), "malloc_tuning": args.malloc_tuning,
        "amoeba": facts["amoeba"], "torch": peer,
        "ratio": facts["amoeba"]["images_per_s"] / peer["images_per_s"] if peer else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, f in facts.items():
            print(f"{name}: {f['images_per_s']:.1f} images/s ({f['step_ms']:.0f} ms per step of {args.batch})")
        if peer:
            print(f"ratio amoeba/torch: {result['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
