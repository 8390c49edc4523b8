"""The reference zoo (traced, never run) against published sizes and Coral's four benchmark latencies."""

from __future__ import annotations

import pytest

from latency import estimate
from latency.ir import DEPTHWISE, POINTWISE, Graph
from nets.trace import trace_module
from nets.zoo import NAMES, ZooError, get

pytestmark = pytest.mark.jax

#: Coral "Edge TPU performance benchmarks" (C++ benchmark, model execution only), ms.
CALIBRATION = (
    ("mobilenet_v1", "usb3", 2.4),
    ("efficientnet_edgetpu_s", "usb3", 5.1),
    ("inception_v4", "usb3", 85.0),
    ("mobilenet_v1", "usb2", 9.0),
)


@pytest.fixture(scope="module")
def graphs() -> dict[str, Graph]:
    out = {}
    for name in NAMES:
        entry = get(name)
        out[name] = trace_module(entry.module, (entry.input_size, entry.input_size, 3), name=name)
    return out


def test_published_sizes(graphs: dict[str, Graph]) -> None:
    mobilenet = graphs["mobilenet_v1"]
    assert mobilenet.total_params() == pytest.approx(4.2e6, rel=0.02)
    assert mobilenet.total_macs() == pytest.approx(569e6, rel=0.01)
    assert mobilenet.count_by_kind()[DEPTHWISE] == 13 and mobilenet.count_by_kind()[POINTWISE] == 13
    assert graphs["efficientnet_edgetpu_s"].total_params() == pytest.approx(5.4e6, rel=0.03)
    assert graphs["inception_v4"].total_params() == pytest.approx(42.7e6, rel=0.01)


@pytest.mark.parametrize(("name", "device", "measured_ms"), CALIBRATION)
def test_calibration_points_within_25_percent(graphs: dict[str, Graph], name: str, device: str,
                                              measured_ms: float) -> None:
    simulated = estimate(graphs[name], device=device).latency_ms
    assert simulated == pytest.approx(measured_ms, rel=0.25), f"{name} on {device}: {simulated:.2f} ms"


def test_what_the_calibration_points_exercise(graphs: dict[str, Graph]) -> None:
    mobilenet = estimate(graphs["mobilenet_v1"], "usb3")
    assert mobilenet.fits_on_chip and mobilenet.streamed_bytes == 0
    # The cached bytes of the feature extractor are close to the compiled model's 3,363,072 B.
    extractor = sum(c.param_bytes for c in mobilenet.layers if c.kind != "dense")
    assert extractor == pytest.approx(3_363_072, rel=0.05)
    util = {c.kind: c.utilization for c in mobilenet.layers}
    assert util["depthwise"] < 0.15 * util["pointwise"]
    inception = estimate(graphs["inception_v4"], "usb3")
    # About 35 MB of Inception v4's int8 weights cannot stay on chip and stream every inference.
    assert not inception.fits_on_chip and inception.streamed_bytes == pytest.approx(35e6, rel=0.1)
    assert estimate(graphs["efficientnet_edgetpu_s"], "usb3").fits_on_chip


def test_the_zoo_s_is_the_block_space_genome_network(graphs: dict[str, Graph]) -> None:
    """One copy: the zoo's EfficientNet-EdgeTPU-S is the edgetpu space's named genome's network, layer for layer."""
    import spaces

    lowered = spaces.get("edgetpu").graph(spaces.named_genome("efficientnet-edgetpu-s"))
    traced = graphs["efficientnet_edgetpu_s"]
    assert [(x.kind, x.inputs, x.out_shape, x.params, x.macs) for x in traced.layers] == [
        (x.kind, x.inputs, x.out_shape, x.params, x.macs) for x in lowered.layers]
    assert estimate(traced, "usb3").latency_ms == pytest.approx(estimate(lowered, "usb3").latency_ms, rel=1e-9)


def test_unknown_zoo_name_and_the_cli_lists_the_same_models() -> None:
    from cli.latency import MODELS

    assert MODELS == NAMES  # the CLI keeps its own copy so the genome path never imports Flax
    with pytest.raises(ZooError, match="unknown model"):
        get("resnet50")
