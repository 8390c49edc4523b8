"""The training-throughput benchmark parses its arguments, and its PyTorch peer model matches the Flax model."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

import spaces

pytestmark = pytest.mark.jax

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_amoebanet_search_child():
    args = _load("train_throughput").parse_args([])
    assert (args.genome, args.cells, args.filters, args.batch, args.image_size) == ("amoebanet-a", 3, 24, 64, 32)
    assert args.conv_impl == "auto" and not args.layers and not args.json


def test_genome_arguments_resolve_through_the_space_registry():
    bench = _load("train_throughput")
    assert bench._genome("amoebanet-a") == spaces.named_genome("amoebanet-a")
    assert bench._genome("random:4") == spaces.get("nasnet").sample(random.Random(4))


@pytest.mark.parametrize("argv", [["--cells", "0"], ["--batch", "-1"], ["--image-size", "4"], ["--warmup", "-1"],
                                  ["--threads", "100000"], ["--conv-impl", "cudnn"]])
def test_bad_arguments_exit_with_an_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _load("train_throughput").parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_the_torch_peer_has_exactly_the_flax_parameter_count():
    torch = pytest.importorskip("torch")

    from nets.build import model_stats

    sys.path.insert(0, str(BENCH))
    try:
        peer = _load("torch_nasnet")
    finally:
        sys.path.remove(str(BENCH))
    # AmoebaNet-A has every structural case: conv_1x7_7x1, reduction-cell output states 0/1, 7x7 kernels.
    genome = spaces.named_genome("amoebanet-a")
    model = peer.TorchNASNet(genome, cells=1, filters=8)
    assert peer.count_params(model) == model_stats(genome, cells=1, filters=8).params
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
