"""One prepared accelerator check: Amoeba's training path on one GPU, against PyTorch, as one JSON object.

Usage (see the README's "Accelerator check" section)::

    python benchmarks/device_check.py                    # a machine with an NVIDIA GPU: under 8 minutes
    python benchmarks/device_check.py --cpu --quick      # the same path at CPU sizes, on any machine
    python benchmarks/device_check.py --out check.json   # also write the JSON object to a file

It prints one JSON object on stdout, one top-level key a line (progress lines go to stderr), and exits
0, or 1 when a section recorded an error, or 130 when interrupted (the object is printed all the same,
with what was done).

**What the machine needs.** Python 3.12 (3.11 works too), JAX with its CUDA plugin, Flax, optax and
PyTorch with CUDA, and this checkout (run from anywhere; the script puts the checkout on
``sys.path``, nothing is installed). The check imports only the training path (``nets``, ``genome``,
``spaces``, ``mutations``, ``latency``, ``domain``, ``worker.training``, and the two benchmark modules
beside it) whose third-party imports are jax, flax, optax and numpy, plus what JAX and Flax import
themselves (absl, etils, flatbuffers, ml_dtypes, msgpack, opt_einsum, pygments, rich, PyYAML,
typing_extensions): **no wheels are needed for the check.** The object lists the third-party modules
the runs loaded (``third_party_modules``) and ``tests/test_device_check.py`` checks that none of the
project's other dependencies is among them. To run the rest of the project there (``amoeba up`` with GPU workers),
carry the other dependencies of pyproject.toml as wheels for that Python, downloaded on a machine with
a package index and copied with the checkout (not committed)::

    pip download --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \\
        -d wheels/ 'grpcio>=1.85.1,<2' 'grpcio-health-checking>=1.66,<2' 'grpcio-reflection>=1.66,<2' \\
        'protobuf>=7.35.1,<8' 'sqlalchemy>=2.0.30,<2.2' 'alembic>=1.13,<2' 'psycopg[binary]>=3.2,<4' \\
        'typer>=0.12,<1' 'rich>=13.7,<16' 'pyyaml>=6,<7' 'pillow>=10,<14' 'matplotlib>=3.8,<4'
    # on the GPU machine, from the checkout (the same requirements: pip keeps what is installed, numpy too)
    pip install --no-index --find-links wheels/ grpcio grpcio-health-checking grpcio-reflection protobuf \\
        sqlalchemy alembic 'psycopg[binary]' typer rich pyyaml pillow matplotlib
    pip install --no-index --no-build-isolation --no-deps -e .    # the amoeba command (needs setuptools)

**Sections**, in this order, each in its own child process (this script with the hidden ``--probe``
option), so that every section starts with the GPU's memory free, a section that fails records its
``error`` and the others still run, and one that would run past the time budget (``--budget-s``,
default 480 s; 900 s with ``--quick``, for a shared CPU) is stopped and records ``"skipped": "time
budget"`` (each section's limit keeps 30 s for every section still to come):

``device``
    ``jax.devices()[0]`` (platform, device_kind), PyTorch's ``torch.cuda.get_device_name``, CPU model.
``compile``
    The train step of the child (``train_throughput.prepare_amoeba``: ahead-of-time ``lower().compile()``)
    in a process with an empty persistent compilation cache (``cold``: what a worker pays for a genome no
    worker has compiled), then in a new process with the same cache directory (``warm``), with JAX's own
    timings of tracing (``trace_s`` includes the abstract trace that draws the initial parameters),
    lowering and the backend compile (or cache load) and its cache hit and miss counts.
``throughput``
    Training images/s of the same child in Amoeba (the worker's train step) and in PyTorch
    (``benchmarks/torch_nasnet.py``, the same network) in one process on the same device, steps interleaved,
    medians (``train_throughput.measure``). Each framework's best precision: on a GPU bfloat16 compute with
    float32 parameters (the training setting ``"dtype": "bfloat16"``) and PyTorch autocast to bfloat16;
    float32 on the CPU. This process holds JAX to half of the GPU's memory, leaving PyTorch the rest.
``workers``
    K = 1, 2, 4 (``--quick``: 1, 2) processes at once, each stepping the same child as ``amoeba up
    --workers-per-accelerator K`` starts its workers: ``CUDA_VISIBLE_DEVICES`` of the one GPU and
    ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = 0.9/K. Each compiles (from the cache of ``compile``), warms up,
    waits for the others, then counts its steps in the same window; images/s per worker and in total.
``tiny_training``
    A real training of the ``tiny`` preset (a random NASNet genome, seed 0) by ``TrainEvaluator`` on a
    learnable CIFAR-format fixture archive (``worker.training.fixtures.write_cifar_archive``, 3,000
    images: each class a colour and stripe pattern plus noise); its validation accuracy against chance
    (0.10). ``above_chance`` is accuracy >= 2 x chance (validation: 256 images, so chance +- 0.02).

Sizes: the GPU run uses the ``amoebanet-search`` child (AmoebaNet-A cells, N = 3, F = 24, batch 64 of
32x32); ``--quick`` uses the ``tiny`` network (N = 1, F = 8, batch 32 of 16x16), few steps and a
2-epoch tiny training; the whole run then takes 5-14 minutes on two shared CPU cores (three NASNet
compilations dominate). ``--cpu`` sets ``JAX_PLATFORMS=cpu`` and runs PyTorch on the CPU. Every child process gets the glibc malloc settings
that ``amoeba up`` gives training workers.

JSON (every section also records ``seconds``; a failed one ``error``, a stopped one ``skipped``)::

    {"benchmark": "device_check", "mode": {"cpu", "quick"}, "budget_s", "versions": {"python", "jax",
     "jaxlib", "flax", "optax", "numpy", "torch", "jax_plugins"}, "load_average": {"start", "end"},
     "child": {"genome", "cells", "filters", "batch", "image_size", "dtype"},
     "device": {"name", "platform", "device_kind", "jax_devices", "torch_device", "cpu_model", "cpus", ...},
     "compile": {"cold": {"compile_s", "trace_s", "lower_s", "backend_s", "cache_hits", "cache_misses"},
                 "warm": {...}, "cache_entries", "cache_mb", "saved_s"},
     "throughput": {"steps", "warmup", "threads", "conv_impl",
                    "amoeba": {"images_per_s", "step_ms", "compile_s", "params", "dtype", ...},
                    "torch": {"images_per_s", "step_ms", "params", "precision", "device"} | {"skipped"},
                    "ratio"},
     "workers": {"window_s", "runs": [{"workers", "mem_fraction", "per_worker_images_per_s",
                 "total_images_per_s", "compile_s", "cache_hits"}...], "total_vs_one": {"2": x, "4": y}},
     "tiny_training": {"accuracy", "chance", "above_chance", "compile_s", "train_s", "steps", "params",
                       "final_loss", "images_per_s", "dtype", "training", "examples"},
     "third_party_modules": [...], "problems": [...], "wall_seconds"}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUDGET_S = 480.0
#: --quick's budget: the CPU sizes take 5-14 minutes on a shared 2-core machine (the 8 minutes are the GPU's).
QUICK_BUDGET_S = 900.0
CHANCE = 0.1
#: Seconds kept for each section still to come when a section's time limit is set.
RESERVE_S = 30.0
#: A section (or a round of workers) with less time than this left is skipped.
MIN_SECTION_S = 15.0
PREFIX = "@@device_check "
SECTIONS = ("compile", "throughput", "workers", "tiny_training")

#: The GPU run: the amoebanet-search child; the tiny preset's 4 epochs.
FULL: dict[str, Any] = {
    "genome": "amoebanet-a", "cells": 3, "filters": 24, "batch": 64, "image_size": 32,
    "steps": 100, "warmup": 10, "workers": [1, 2, 4], "window_s": 10.0, "worker_warmup": 3,
    "training": {"preset": "tiny"}, "fixture_per_batch": 600,
}
#: --quick: CPU sizes (the tiny preset's network), few steps, a 2-epoch tiny training.
QUICK: dict[str, Any] = {
    "genome": "amoebanet-a", "cells": 1, "filters": 8, "batch": 32, "image_size": 16,
    "steps": 3, "warmup": 1, "workers": [1, 2], "window_s": 3.0, "worker_warmup": 1,
    "training": {"preset": "tiny", "epochs": 2}, "fixture_per_batch": 600,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="JAX and PyTorch on the CPU (JAX_PLATFORMS=cpu)")
    p.add_argument("--quick", action="store_true", help="CPU sizes: the tiny network, few steps, K <= 2 workers")
    p.add_argument("--budget-s", type=float, default=None,
                   help=f"time budget of the whole run in seconds (default {BUDGET_S:.0f}; "
                        f"with --quick {QUICK_BUDGET_S:.0f})")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON object to this file")
    p.add_argument("--verbose", action="store_true", help="pass the child processes' stderr through")
    p.add_argument("--keep", action="store_true", help="keep the work folder (caches, fixture) and print its path")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = QUICK_BUDGET_S if args.quick else BUDGET_S
    if not args.budget_s > 0:
        p.error("--budget-s must be positive")
    return args


# -- the child processes (--probe KIND --spec JSON) ---------------------------------------------------------


def emit(update: dict[str, Any]) -> None:
    """Send part of this probe's result to the coordinator (merged into the section, kept if killed later)."""
    print(PREFIX + json.dumps(update), flush=True)


class CompileEvents:
    """JAX's own compile timings and persistent-cache counts (``jax.monitoring`` events) since creation."""

    NAMES: ClassVar[dict[str, str]] = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
                                       "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
                                       "/jax/core/compile/backend_compile_duration": "backend_s"}

    def __init__(self) -> None:
        import jax.monitoring

        self.seconds = dict.fromkeys(self.NAMES.values(), 0.0)
        self.counts = {"cache_hits": 0, "cache_misses": 0}
        self.listening = True
        try:
            jax.monitoring.register_event_duration_secs_listener(self._duration)
            jax.monitoring.register_event_listener(self._event)
        except (AttributeError, TypeError):  # a JAX without these listeners: compile_s is still measured
            self.listening = False

    def _duration(self, event: str, duration: float, **_: Any) -> None:
        if event in self.NAMES:
            self.seconds[self.NAMES[event]] += duration

    def _event(self, event: str, **_: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.counts["cache_hits"] += 1
        elif event == "/jax/compilation_cache/cache_misses":
            self.counts["cache_misses"] += 1

    def snapshot(self) -> dict[str, Any]:
        if not self.listening:
            return dict.fromkeys([*self.seconds, *self.counts])
        return {**{k: round(v, 3) for k, v in self.seconds.items()}, **self.counts}


def _child_args(spec: dict[str, Any]) -> argparse.Namespace:
    return argparse.Namespace(cells=spec["cells"], filters=spec["filters"], batch=spec["batch"],
                              image_size=spec["image_size"])


def _prepare_child(spec: dict[str, Any]) -> tuple[Callable[[], None], Callable[[], float], dict[str, Any]]:
    """The child's Amoeba train step, compiled (through the persistent cache in ``spec["cache_dir"]``)."""
    import train_throughput as tt

    from worker.training.evaluator import enable_compilation_cache

    events = CompileEvents()
    if spec.get("cache_dir"):
        enable_compilation_cache(spec["cache_dir"])
    run, loss, facts = tt.prepare_amoeba(_child_args(spec), tt._genome(spec["genome"]), spec["dtype"])
    facts.update(dtype=spec["dtype"], **events.snapshot())
    return run, loss, facts


def probe_device(spec: dict[str, Any]) -> dict[str, Any]:
    import jax

    devices = jax.devices()
    out: dict[str, Any] = {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
                           "jax_devices": len(devices), "jax_backend": jax.default_backend()}
    try:
        import torch
    except ImportError:
        out["torch_device"] = None
        return out
    cuda = bool(torch.cuda.is_available()) and not spec["cpu"]
    out["torch_cuda"] = torch.version.cuda
    out["torch_device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    if cuda:
        out["torch_device_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return out


def probe_compile(spec: dict[str, Any]) -> dict[str, Any]:
    run, loss, facts = _prepare_child(spec)
    run()  # the compiled (or loaded) executable runs
    if not math.isfinite(loss()):
        raise RuntimeError(f"the train step loaded from the cache gave a non-finite loss ({loss()})")
    return {k: facts[k] for k in ("compile_s", "trace_s", "lower_s", "backend_s", "cache_hits", "cache_misses")}


def probe_throughput(spec: dict[str, Any]) -> dict[str, Any]:
    import train_throughput as tt

    from nets.fastconv import resolve_impl

    threads = len(os.sched_getaffinity(0))
    runners: dict[str, Callable[[], None]] = {}
    losses: dict[str, Callable[[], float]] = {}
    runners["amoeba"], losses["amoeba"], amoeba = _prepare_child(spec)
    emit({"amoeba": amoeba, "threads": threads, "conv_impl": resolve_impl()})
    peer: dict[str, Any]
    failed: dict[str, str] = {}
    try:
        run_torch, losses["torch"], peer = tt.prepare_torch(_child_args(spec), tt._genome(spec["genome"]), threads,
                                                            spec["torch_device"], spec["dtype"])
    except ImportError as exc:
        peer = {"skipped": "torch not installed"} if exc.name == "torch" else {"error": f"ImportError: {exc}"}
    except Exception as exc:
        peer = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    else:
        peer.update(precision="bfloat16 autocast" if spec["dtype"] == "bfloat16" else "float32",
                    device=spec["torch_device"])

        def guarded() -> None:  # a PyTorch failure (out of memory, ...) must not lose Amoeba's figures
            if "torch" not in failed:
                try:
                    run_torch()
                except Exception as exc:
                    failed["torch"] = f"{type(exc).__name__}: {exc}"[:500]

        runners["torch"] = guarded
    seconds = tt.measure(runners, spec["warmup"], spec["steps"])
    facts = {"amoeba": amoeba, "torch": peer}
    for name in runners:
        if name in failed:
            peer["error"] = failed[name]
            continue
        loss = losses[name]()
        facts[name].update(images_per_s=spec["batch"] / seconds[name], step_ms=seconds[name] * 1e3, final_loss=loss)
        if not math.isfinite(loss):
            facts[name]["error"] = f"non-finite loss {loss}"
    ok = "images_per_s" in peer and "error" not in peer
    return {"steps": spec["steps"], "warmup": spec["warmup"], "amoeba": amoeba, "torch": peer,
            "ratio": amoeba["images_per_s"] / peer["images_per_s"] if ok else None}


def probe_worker(spec: dict[str, Any]) -> dict[str, Any]:
    run, loss, facts = _prepare_child(spec)
    for _ in range(spec["warmup"]):
        run()
    emit({"ready": True, "compile_s": facts["compile_s"], "cache_hits": facts["cache_hits"]})
    sys.stdin.readline()  # "go" once every worker is ready (or EOF: the coordinator is gone)
    start = time.perf_counter()
    end = start + spec["window_s"]
    steps = 0
    now = start
    while now < end or steps == 0:
        run()
        steps += 1
        now = time.perf_counter()
    return {"steps": steps, "seconds": now - start, "images_per_s": steps * spec["batch"] / (now - start),
            "final_loss": loss()}


def probe_train(spec: dict[str, Any]) -> dict[str, Any]:
    import random

    import spaces
    from domain import Lease
    from genome.base import canonical_json
    from worker.training.evaluator import TrainEvaluator
    from worker.training.fixtures import write_cifar_archive
    from worker.training.presets import resolve_training
    from worker.trial import Trial

    work = Path(spec["dir"])
    start = time.perf_counter()
    write_cifar_archive(work / "cifar", per_batch=spec["fixture_per_batch"])
    training = dict(spec["training"], dtype=spec["dtype"])
    config = resolve_training(training)
    genome = spaces.get("nasnet").sample(random.Random(0))
    evaluator = TrainEvaluator(str(work / "cifar"), cache_dir=work / "train-cache", download=False, progress=False,
                               default_preset="tiny")
    trial = Trial(Lease(experiment="device-check", individual_id=0, proposal_seq=0, token="", deadline=0.0,
                        attempt=1, genome_json=canonical_json(genome.to_json()), space=genome.space, seed=0,
                        training=training))
    metrics = evaluator.evaluate(trial, threading.Event())
    extra = metrics.extra or {}
    return {
        "accuracy": metrics.accuracy, "chance": CHANCE, "above_chance": metrics.accuracy >= 2 * CHANCE,
        "compile_s": metrics.compile_seconds, "train_s": metrics.train_seconds, "steps": int(extra.get("steps", 0)),
        "params": metrics.params, "final_loss": extra.get("final_loss"),
        "images_per_s": extra.get("images_per_second"), "dtype": config.dtype, "training": training,
        "genome": genome.fingerprint, "examples": {"fixture": 5 * spec["fixture_per_batch"],
                                                   "train": config.train_examples,
                                                   "validation": config.validation_examples},
        "wall_s": time.perf_counter() - start,
    }


PROBES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "device": probe_device, "compile": probe_compile, "throughput": probe_throughput, "worker": probe_worker,
    "train": probe_train,
}


def third_party_modules() -> list[str]:
    """Top-level modules loaded in this process that are neither the standard library nor this checkout."""
    names = set()
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        if "." in name or top.startswith("_") or top in sys.stdlib_module_names:
            continue
        where = getattr(module, "__file__", None)
        path = Path(where).resolve() if where else None
        if path and path.is_relative_to(ROOT) and not {"site-packages", "dist-packages"} & set(path.parts):
            continue
        names.add(top)
    return sorted(names)


def probe_main(kind: str, spec: dict[str, Any]) -> int:
    sys.path[:0] = [str(ROOT), str(HERE)]
    try:
        result = PROBES[kind](spec)
    except BaseException as exc:
        emit({"error": f"{type(exc).__name__}: {exc}".strip()[:500], "_modules": third_party_modules()})
        return 1
    emit({**result, "_modules": third_party_modules()})
    return 0


# -- the coordinator --------------------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGINT or SIGTERM: print what was measured and stop."""


class Probe:
    """A child process of this script in ``--probe KIND`` mode; its updates merge into ``into`` as they come."""

    live: ClassVar[set[Probe]] = set()

    def __init__(self, check: Check, kind: str, spec: dict[str, Any], env: dict[str, str],
                 into: dict[str, Any]) -> None:
        self.check, self.kind, self.into = check, kind, into
        self.stderr: deque[str] = deque(maxlen=60)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--probe", kind, "--spec", json.dumps(spec)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its own process group: killed as one, and no terminal SIGINT reaches it
        Probe.live.add(self)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                try:
                    update = json.loads(line[len(PREFIX):])
                except ValueError:
                    continue
                self.check.modules.update(update.pop("_modules", []))
                self.into.update(update)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            if self.check.verbose:
                print(f"  [{self.kind}] {line.rstrip()}", file=sys.stderr, flush=True)

    def send(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(text)
            self.proc.stdin.flush()

    def wait_for(self, key: str, deadline: float) -> bool:
        """Until ``key`` is in the updates (True), the process ends or the deadline passes (False)."""
        while key not in self.into:
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                return key in self.into
            time.sleep(0.05)
        return True

    def finish(self, deadline: float) -> dict[str, Any]:
        """Wait for the process (killed at the deadline) and return its merged result."""
        try:
            rc = self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        for t in self._readers:
            t.join(timeout=5)
        Probe.live.discard(self)
        if rc is None:
            self.into["skipped"] = "time budget"
        elif rc != 0 and "error" not in self.into:
            lines = [ln for ln in self.stderr if ln.strip()]
            self.into["error"] = (lines[-1] if lines else f"exit status {rc}")[:500]
        return self.into

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        import train_throughput as tt

        self.args = args
        self.verbose: bool = args.verbose
        self.started = time.monotonic()
        self.deadline = self.started + args.budget_s
        self.sizes = QUICK if args.quick else FULL
        self.modules: set[str] = set()
        self.work = Path(tempfile.mkdtemp(prefix="amoeba-device-check-"))
        self.cache = self.work / "jax-cache"  # the child's persistent compilation cache (compile, then the rest)
        env = {**os.environ, **tt.MALLOC_TUNING, "PYTHONUNBUFFERED": "1"}
        if args.cpu:
            env["JAX_PLATFORMS"] = "cpu"
        else:
            visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",") if g.strip()]
            env["CUDA_VISIBLE_DEVICES"] = visible[0] if visible else "0"  # the one GPU, for every process
        self.env = env
        self.gpu = False
        self.dtype = "float32"

    def log(self, text: str) -> None:
        print(f"device_check [{time.monotonic() - self.started:5.0f} s] {text}", file=sys.stderr, flush=True)

    def spec(self, **more: Any) -> dict[str, Any]:
        keys = ("genome", "cells", "filters", "batch", "image_size")
        return {**{k: self.sizes[k] for k in keys}, "dtype": self.dtype, "cpu": self.args.cpu, **more}

    def run_probe(self, kind: str, spec: dict[str, Any], into: dict[str, Any], deadline: float,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
        return Probe(self, kind, spec, env or self.env, into).finish(deadline)

    # --- sections; each fills ``out`` as it goes ---

    def device(self, out: dict[str, Any], deadline: float) -> None:
        self.run_probe("device", self.spec(), out, deadline, {**self.env, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
        self.gpu = out.get("platform") in ("gpu", "cuda", "rocm")
        self.dtype = "bfloat16" if self.gpu else "float32"
        out["name"] = (out.get("torch_device") if self.gpu and out.get("torch_device") not in (None, "cpu")
                       else out.get("device_kind") if self.gpu else cpu_model())
        out["cpu_model"] = cpu_model()
        out["cpus"] = len(os.sched_getaffinity(0))
        out["cuda_visible_devices"] = self.env.get("CUDA_VISIBLE_DEVICES")

    def compile(self, out: dict[str, Any], deadline: float) -> None:
        out["cold"], out["warm"] = {}, {}
        self.run_probe("compile", self.spec(cache_dir=str(self.cache)), out["cold"], deadline)
        files = [p for p in self.cache.rglob("*") if p.is_file()] if self.cache.is_dir() else []
        out["cache_entries"] = len(files)
        out["cache_mb"] = round(sum(p.stat().st_size for p in files) / 1e6, 1)
        if "compile_s" not in out["cold"]:
            out["warm"] = {"skipped": "the cold compile did not finish"}
            return
        self.log(f"compile: cold {out['cold']['compile_s']:.1f} s")
        self.run_probe("compile", self.spec(cache_dir=str(self.cache)), out["warm"], deadline)
        if "compile_s" in out["warm"]:
            out["saved_s"] = out["cold"]["compile_s"] - out["warm"]["compile_s"]
            self.log(f"compile: warm {out['warm']['compile_s']:.1f} s ({out['warm'].get('cache_hits')} cache hits)")

    def throughput(self, out: dict[str, Any], deadline: float) -> None:
        spec = self.spec(cache_dir=str(self.cache), steps=self.sizes["steps"], warmup=self.sizes["warmup"],
                         torch_device="cuda:0" if self.gpu else "cpu")
        env = {**self.env, "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"} if self.gpu else self.env
        self.run_probe("throughput", spec, out, deadline, env)
        amoeba, peer = out.get("amoeba", {}), out.get("torch") or {}
        if "images_per_s" in amoeba:
            torch_text = (f"{peer['images_per_s']:.1f}" if "images_per_s" in peer
                          else peer.get("skipped") or peer.get("error"))
            self.log(f"throughput: amoeba {amoeba['images_per_s']:.1f} images/s, torch {torch_text}")

    def workers(self, out: dict[str, Any], deadline: float) -> None:
        out["window_s"] = self.sizes["window_s"]
        out["runs"] = []
        totals: dict[int, float] = {}
        for k in self.sizes["workers"]:
            run: dict[str, Any] = {"workers": k}
            out["runs"].append(run)
            if deadline - time.monotonic() < MIN_SECTION_S:
                run["skipped"] = "time budget"
                continue
            env = dict(self.env)
            if self.gpu:
                env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / k:.3f}"  # as cli.up.shared_accelerators
            run["mem_fraction"] = env.get("XLA_PYTHON_CLIENT_MEM_FRACTION")
            spec = self.spec(cache_dir=str(self.cache), warmup=self.sizes["worker_warmup"],
                             window_s=self.sizes["window_s"])
            results: list[dict[str, Any]] = [{} for _ in range(k)]
            probes = [Probe(self, "worker", spec, env, results[i]) for i in range(k)]
            ready = all(p.wait_for("ready", deadline - self.sizes["window_s"] - 5) for p in probes)
            if ready:
                for p in probes:
                    p.send("go\n")
            else:
                for p in probes:
                    p.kill()
            for p in probes:
                p.finish(deadline)
            errors = [r["error"] for r in results if "error" in r]
            if errors:
                run["error"] = errors[0]
            elif not all("images_per_s" in r for r in results):
                run["skipped"] = "time budget"
            else:
                run["per_worker_images_per_s"] = [r["images_per_s"] for r in results]
                run["total_images_per_s"] = totals[k] = sum(run["per_worker_images_per_s"])
                self.log(f"workers: {k} -> {totals[k]:.1f} images/s in total")
            run["compile_s"] = [r.get("compile_s") for r in results]
            run["cache_hits"] = [r.get("cache_hits") for r in results]
        if 1 in totals:
            out["total_vs_one"] = {str(k): totals[k] / totals[1] for k in totals if k != 1}

    def tiny_training(self, out: dict[str, Any], deadline: float) -> None:
        spec = self.spec(dir=str(self.work / "train"), training=self.sizes["training"],
                         fixture_per_batch=self.sizes["fixture_per_batch"])
        self.run_probe("train", spec, out, deadline)
        if "accuracy" in out:
            self.log(f"tiny training: accuracy {out['accuracy']:.3f} (chance {CHANCE})")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["jax_plugins"] = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                                if (d.metadata["Name"] or "").lower().replace("_", "-").startswith("jax-cuda"))
    return out


def problems_of(report: dict[str, Any]) -> list[str]:
    """One line per error or skipped part (a missing PyTorch included)."""
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key in ("error", "skipped"):
                if key in value:
                    found.append(f"{where}: {key}: {value[key]}")
            for key, inner in value.items():
                walk(inner, f"{where}.{key}")
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                walk(inner, f"{where}[{i}]")

    for name in ("device", *SECTIONS):
        walk(report.get(name), name)
    return found


def rounded(value: Any) -> Any:
    """The report with every float rounded to 3 decimals (timings and rates; nothing finer is meaningful)."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe:
        return probe_main(args.probe, json.loads(args.spec))
    sys.path[:0] = [str(HERE)]
    check = Check(args)

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    report: dict[str, Any] = {
        "benchmark": "device_check", "mode": {"cpu": args.cpu, "quick": args.quick}, "budget_s": args.budget_s,
        "versions": versions(), "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "child": None, "device": {}, **{name: {} for name in SECTIONS},
    }
    interrupted = False
    done: set[str] = set()
    sections: list[tuple[str, Callable[[dict[str, Any], float], None]]] = [
        ("device", check.device), ("compile", check.compile), ("throughput", check.throughput),
        ("workers", check.workers), ("tiny_training", check.tiny_training)]
    try:
        for i, (name, section) in enumerate(sections):
            out = report[name]
            now = time.monotonic()
            # Time is kept for the sections still to come; the device section (which the others need) runs anyway.
            deadline = check.deadline - (RESERVE_S * (len(sections) - 1 - i) if name != "device" else 0.0)
            if deadline - now < MIN_SECTION_S:
                out["skipped"] = "time budget"
                check.log(f"{name}: skipped (time budget)")
                continue
            try:
                section(out, deadline)
            except Interrupted:
                raise
            except Exception as exc:  # a fault of this script: recorded, and the other sections still run
                out["error"] = f"device_check: {type(exc).__name__}: {exc}"[:500]
            finally:
                out["seconds"] = round(time.monotonic() - now, 1)
            done.add(name)
            if name == "device":
                report["child"] = {k: check.sizes[k] for k in ("genome", "cells", "filters", "batch", "image_size")}
                report["child"]["dtype"] = check.dtype
                check.log(f"device: {out.get('name')} ({out.get('platform')}); child {report['child']}")
    except Interrupted as exc:
        interrupted = True
        for probe in list(Probe.live):
            probe.kill()
        for name, _ in sections:
            if name not in done:
                report[name].setdefault("skipped", f"interrupted ({exc})")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if args.keep:
            report["work_dir"] = str(check.work)
        else:
            shutil.rmtree(check.work, ignore_errors=True)
    report["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    report["third_party_modules"] = sorted(check.modules)
    report["problems"] = problems_of(report)
    report["wall_seconds"] = round(time.monotonic() - check.started, 1)
    # One JSON object, one top-level key a line: a person can read it, json.loads takes it whole.
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in rounded(report).items()) + "\n}"
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if interrupted:
        return 130
    return 1 if any(p.split(": ", 2)[1] == "error" for p in report["problems"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
