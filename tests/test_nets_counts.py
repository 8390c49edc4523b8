"""Model fidelity: op table coverage, published parameter / multiply-add counts, the model-info command."""

from __future__ import annotations

import json

import pytest

import spaces
from genome import NASNET_OPS
from genome.reference import PUBLISHED
from nets.build import count_params, model_stats
from nets.ops import OPS

pytestmark = pytest.mark.jax


def test_op_table_covers_exactly_the_genome_ops() -> None:
    assert sorted(OPS) == sorted(NASNET_OPS)


@pytest.mark.parametrize(
    ("name", "key"), [("amoebanet-a", "cifar10"), ("amoebanet-a", "cifar10_small"), ("nasnet-a", "cifar10")]
)
def test_cifar_parameter_counts_match_the_papers(name: str, key: str) -> None:
    ref = PUBLISHED[name][key]
    stats = model_stats(spaces.named_genome(name), {"cells": ref["N"], "filters": ref["F"]}, "cifar10")
    assert stats.params == pytest.approx(ref["params_M"] * 1e6, rel=0.10)


def test_imagenet_amoebanet_a_matches_params_and_mult_adds() -> None:
    ref = PUBLISHED["amoebanet-a"]["imagenet"]
    # The paper's ImageNet figures are for 331x331 inputs and the reference's 1001 classes.
    stats = model_stats(spaces.named_genome("amoebanet-a"), {"cells": ref["N"], "filters": ref["F"]},
                        "imagenet", image_size=331, num_classes=1001)
    assert stats.params == pytest.approx(ref["params_M"] * 1e6, rel=0.10)
    assert stats.mult_adds == pytest.approx(ref["mult_adds_B"] * 1e9, rel=0.10)


def test_nb201_largest_cell_has_the_benchmarks_parameter_count() -> None:
    # NAS-Bench-201's all-3x3-conv cell is its largest network: 1.53 M parameters on CIFAR-10.
    genome = spaces.parse_genome("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    assert model_stats(genome, cells=5, filters=16).params == pytest.approx(1.53e6, rel=0.01)
    # 5 x 16 is the space's standard network.
    assert model_stats(genome) == model_stats(genome, {"cells": 5, "filters": 16})
    empty = spaces.parse_genome("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    stats = model_stats(empty, cells=5, filters=16)
    # Only the stem, the two residual blocks and the head remain.
    assert stats.params < 0.1e6 and stats.layers == 1 + 2 * 3 + 1


def test_count_params_counts_only_trainable_params() -> None:
    import numpy as np

    variables = {"params": {"a": {"kernel": np.zeros((3, 3, 4, 8))}, "b": np.zeros(5)},
                 "batch_stats": {"mean": np.zeros(100)}}
    assert count_params(variables) == 3 * 3 * 4 * 8 + 5


def test_model_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["model-info", "--genome", "nasnet-a", "--cells", "2", "--filters", "8", "--json"])
    assert exit_info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    expected = model_stats(spaces.named_genome("nasnet-a"), cells=2, filters=8)
    assert (doc["params"], doc["mult_adds"], doc["layers"]) == (expected.params, expected.mult_adds, expected.layers)
    assert doc["space"] == "nasnet" and doc["image_size"] == 32
    assert (doc["cells"], doc["filters"]) == (2, 8)
    assert doc["network"] == {**spaces.get("nasnet").network, "cells": 2, "filters": 8}


def test_model_info_defaults_to_the_space_standard_network(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    # NASNet: the paper's search child N = 3, F = 24 (no longer 6 x 36); NB201: the benchmark's 5 x 16.
    for genome, space, standard in (("nasnet-a", "nasnet", (3, 24)),
                                    ("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", "nb201", (5, 16))):
        with pytest.raises(SystemExit) as exit_info:
            main(["model-info", "--genome", genome, "--json"])
        assert exit_info.value.code == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["space"] == space and (doc["cells"], doc["filters"]) == standard
        assert doc["network"] == dict(spaces.get(space).network)
        expected = model_stats(spaces.parse_genome(genome) if space == "nb201" else spaces.named_genome(genome))
        assert (doc["params"], doc["mult_adds"], doc["layers"]) == (expected.params, expected.mult_adds, expected.layers)


def test_model_info_reads_a_genome_file_and_rejects_bad_input(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    path = tmp_path / "g.json"
    path.write_text(json.dumps({"space": "nb201", "arch": "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"}))
    with pytest.raises(SystemExit) as exit_info:
        main(["model-info", "--genome", str(path), "--cells", "1", "--filters", "4", "--json"])
    assert exit_info.value.code == 0
    assert json.loads(capsys.readouterr().out)["space"] == "nb201"
    for argv in (["--genome", "no-such-genome"], ["--genome", "nasnet-a", "--dataset", "mnist"],
                 ["--genome", "nasnet-a", "--cells", "0"], ["--genome", "nasnet-a", "--image-size", "2"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["model-info", *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("amoeba: error:") and err.count("\n") == 1


# --- the EfficientNet-EdgeTPU block space: published sizes (tensorflow/tpu efficientnet/edgetpu README) -----


def test_model_info_efficientnet_edgetpu_s_at_224(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["model-info", "--genome", "efficientnet-edgetpu-s", "--dataset", "imagenet", "--json"])
    assert exit_info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["space"] == "edgetpu" and (doc["image_size"], doc["num_classes"]) == (224, 1000)
    assert doc["params"] == pytest.approx(5.4e6, rel=0.05)  # published: 5.4 M
    assert doc["network"] == dict(spaces.get("edgetpu").network) and doc["cells"] is None
    graph = spaces.get("edgetpu").graph(spaces.named_genome("efficientnet-edgetpu-s"))
    assert (doc["params"], doc["mult_adds"]) == (graph.total_params(), graph.total_macs())
    with pytest.raises(SystemExit):
        main(["model-info", "--genome", "efficientnet-edgetpu-s"])
    out = capsys.readouterr().out
    assert out.startswith("efficientnet-edgetpu-s (edgetpu, width=1.0, depth=1.0, cifar10 32x32, 10 classes)")


@pytest.mark.parametrize(("name", "size", "published"), [("efficientnet-edgetpu-m", 240, 6.9e6),
                                                         ("efficientnet-edgetpu-l", 300, 10.6e6)])
def test_scaled_m_and_l_have_the_published_sizes(name: str, size: int, published: float) -> None:
    stats = model_stats(spaces.named_genome(name), None, "imagenet", image_size=size)
    assert stats.params == pytest.approx(published, rel=0.05)


def test_the_edgetpu_builder_refuses_keys_its_network_lacks() -> None:
    from nets.build import ModelConfigError, build_model

    genome = spaces.named_genome("efficientnet-edgetpu-s")
    with pytest.raises(ModelConfigError, match="network has no cells"):
        build_model(genome, {"cells": 3}, num_classes=10)
    with pytest.raises(ModelConfigError, match="network width must be a number"):
        build_model(genome, {"width": 0}, num_classes=10)
    from genome import GenomeError
    from genome.edgetpu import Stage

    bad = genome.replace_stage(2, Stage("fused", 7, 8, 4, 48))  # type: ignore[attr-defined]
    with pytest.raises(GenomeError, match="stage 2: kernel must be one of 3, 5, got 7"):
        build_model(bad, num_classes=10)
