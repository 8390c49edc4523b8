"""Int8 TFLite export for the Edge TPU: the tiny preset's child exports full int8 with every operator mapped,
batch norm folded, the file's simulated latency agrees with the genome lowering's, LiteRT measures float
against int8 accuracy of a briefly trained child, ``amoeba latency --tflite`` reads any such file (without
JAX or TensorFlow), and bad files or a missing extra are one-line errors.

Small networks only (the tiny preset: N = 1, F = 8, 16x16 images; a few hundred fixture images).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spaces
from export.data import ExportData, cifar_export_data, imagenet_export_data
from export.edgetpu import SUPPORTED_OPS, check
from export.flatbuf import TfliteModel, read_tflite
from export.reader import tflite_graph
from export.run import export_individual, report_lines
from export.tflite import export_float, export_int8, unstack_scanned
from genome import NASNET_OPS, Genome
from latency import estimate
from nets.build import build_model, init_variables
from nets.layers import conv_impl, edgetpu_form
from tests.fixtures_data import write_cifar_archive, write_imagenet_folders
from worker.training.augment import CIFAR_MEAN, CIFAR_STD, resize_area
from worker.training.data_cifar import load_cifar10
from worker.training.errors import DatasetUnavailable
from worker.training.presets import resolve_training
from worker.training.train import init_state, make_optimizer, make_train_step

pytestmark = [pytest.mark.jax, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TINY = resolve_training({"preset": "tiny"})
TINY_NETWORK = {"cells": TINY.cells, "filters": TINY.filters}
SIZE = TINY.image_size
NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def amoeba(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=300,
                          check=False, cwd=ROOT)


def random_variables(genome: Genome, network: dict[str, int], size: int, seed: int = 0, *, scan: bool = False) -> Any:
    """Initial variables with the batch statistics moved off (0, 1), so that folding them is not a no-op."""
    model = build_model(genome, network, num_classes=10, scan=scan)
    with conv_impl("xla"):
        variables = init_variables(model, (1, size, size, 3), seed)
    rng = np.random.default_rng(seed)

    def perturb(path: Any, leaf: Any) -> Any:
        noise = rng.standard_normal(np.shape(leaf)).astype(np.float32)
        return np.abs(1 + 0.3 * noise) if getattr(path[-1], "key", None) == "var" else 0.1 * noise

    return {"params": jax.tree_util.tree_map(np.asarray, variables["params"]),
            "batch_stats": jax.tree_util.tree_map_with_path(perturb, variables["batch_stats"])}


def every_op_genome() -> Genome:
    """A sampled NASNet genome whose two cells use all eight ops between them."""
    space = spaces.get("nasnet")
    rng = random.Random(11)
    for _ in range(5000):
        g: Any = space.sample(rng)
        ops = {op for cell in (g.normal, g.reduction) for c in cell.combinations for op in c.ops()}
        if ops == set(NASNET_OPS):
            found: Genome = g
            return found
    raise AssertionError("no sampled genome uses every op")


def lowering_agrees(genome: Genome, network: dict[str, int], model: TfliteModel, size: int) -> dict[str, float]:
    space = spaces.get(genome.space)
    lowered = space.graph(genome, **network, input_size=size, num_classes=10)
    read = tflite_graph(model)
    errors = {}
    for device in ("usb3", "usb2", "pcie"):
        a, b = estimate(read, device).latency_ms, estimate(lowered, device).latency_ms
        errors[device] = a / b - 1
    return errors


def assert_full_int8(model: TfliteModel) -> None:
    for i in (*model.inputs, *model.outputs):
        assert model.tensor(i).dtype == "int8", model.tensor(i)
    for op in model.ops:
        for i in (*op.inputs, *op.outputs):
            if i < 0:
                continue
            t = model.tensor(i)
            if not t.const:
                assert t.dtype == "int8", (op.name, t)  # activations
            elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and i == op.inputs[1]:
                assert t.dtype == "int8", (op.name, t)  # weights
            else:
                assert t.dtype in ("int8", "int32"), (op.name, t)  # biases, shapes


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> ExportData:
    archive = write_cifar_archive(tmp_path_factory.mktemp("cifar"), per_batch=100, test_size=200)
    return cifar_export_data(archive, image_size=SIZE, representative=128)


@pytest.fixture(scope="module")
def tiny_export(cifar: ExportData, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], TfliteModel]:
    """The tiny preset's AmoebaNet-A child (randomly initialised) exported by ``export_individual``."""
    genome = spaces.named_genome("amoebanet-a")
    out = tmp_path_factory.mktemp("export") / "tiny.tflite"
    doc = export_individual(genome, TINY_NETWORK, random_variables(genome, TINY_NETWORK, SIZE), cifar, out)
    return doc, read_tflite(out)


def test_the_edgetpu_form_computes_the_same_function() -> None:
    """The export form rewrites the factorized reduction and the global pool without changing the outputs
    (odd and even sizes; NB201's head too)."""
    cases = [(spaces.named_genome("amoebanet-a"), TINY_NETWORK, 16), (spaces.named_genome("nasnet-a"), TINY_NETWORK, 15),
             (spaces.parse_genome(NB201), {"cells": 1, "filters": 8}, 16)]
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    for genome, network, size in cases:
        model = build_model(genome, network, num_classes=10, scan=False)
        variables = random_variables(genome, network, size)
        with conv_impl("xla"):
            plain = np.asarray(model.apply(variables, x[:, :size, :size], train=False))
            with edgetpu_form():
                rewritten = np.asarray(model.apply(variables, x[:, :size, :size], train=False))
        np.testing.assert_allclose(rewritten, plain, rtol=1e-4, atol=1e-4 * float(np.abs(plain).max()))


def test_scanned_cells_unstack_into_the_unrolled_layout() -> None:
    genome, network = spaces.named_genome("amoebanet-a"), {"cells": 3, "filters": 4}
    scanned = build_model(genome, network, num_classes=10, scan=True)
    variables = random_variables(genome, network, 8, scan=True)
    assert any(k.endswith("_cells3to3") for k in variables["params"])
    unrolled = build_model(genome, network, num_classes=10, scan=False)
    flat = unstack_scanned(variables)
    assert "stack2_cell3" in flat["params"] and not any("_cells" in k for k in flat["params"])
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 3)).astype(np.float32)
    with conv_impl("xla"):
        want = np.asarray(scanned.apply(variables, x, train=False))
        got = np.asarray(unrolled.apply(flat, x, train=False))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def test_the_tiny_child_exports_full_int8_with_every_op_mapped(tiny_export: tuple[dict[str, Any], TfliteModel]) -> None:
    doc, model = tiny_export
    assert Path(doc["out"]).stat().st_size == doc["bytes"] == model.size_bytes
    assert_full_int8(model)
    assert doc["all_quantized"] is True
    assert doc["ops_mapped"] == doc["ops_total"] == len(model.ops) and doc["unmapped"] == []
    assert {op.name for op in model.ops} <= SUPPORTED_OPS
    assert "QUANTIZE" not in {op.name for op in model.ops}  # int8 in and out: nothing to requantize
    # Raw pixels in: the calibrated input quantization is pixel - 128.
    assert doc["input"] == {"dtype": "int8", "scale": pytest.approx(1.0, abs=1e-6), "zero_point": -128}
    assert doc["compile_command"] == f"edgetpu_compiler -s {doc['out']}"
    assert set(doc) >= {"out", "bytes", "float_accuracy", "int8_accuracy", "ops_total", "ops_mapped", "unmapped",
                        "latency_ms"}
    lines = report_lines(doc, check(model))
    assert any(f"all {doc['ops_total']} operators map to the Edge TPU" in ln for ln in lines)
    assert lines[-1].strip() == doc["compile_command"]


def test_batch_norm_is_folded_into_the_convolutions(tiny_export: tuple[dict[str, Any], TfliteModel]) -> None:
    """No batch norm survives as an op: the only elementwise ops with a constant operand are the input
    normalization's; every other ADD is a cell combination (5 cells x 5 combinations)."""
    _, model = tiny_export
    counts = Counter(op.name for op in model.ops)
    assert counts["SUB"] == 0
    normalization = model.ops[:2]
    assert [op.name for op in normalization] == ["MUL", "ADD"]
    assert model.activations(normalization[0])[0].index == model.inputs[0]
    for op in model.ops[2:]:
        if op.name in ("ADD", "MUL", "SUB"):
            assert len(model.activations(op)) == 2, op
    assert counts["ADD"] - 1 == 25 and counts["MUL"] == 1


def test_the_files_latency_agrees_with_the_genome_lowering(tiny_export: tuple[dict[str, Any], TfliteModel]) -> None:
    doc, model = tiny_export
    errors = lowering_agrees(spaces.named_genome("amoebanet-a"), TINY_NETWORK, model, SIZE)
    assert all(abs(e) < 0.05 for e in errors.values()), errors
    assert doc["latency_ms"] == pytest.approx(estimate(tflite_graph(model), "usb3").latency_ms, abs=1e-4)


def test_every_nasnet_op_maps(cifar: ExportData) -> None:
    """Dilated separable convolutions, the 1x7/7x1 bottleneck, pools and identities all map."""
    genome = every_op_genome()
    data = export_int8(genome, TINY_NETWORK, random_variables(genome, TINY_NETWORK, SIZE), cifar.representative, 10)
    model = read_tflite(data)
    report = check(model)
    assert report.fully_mapped, report.to_json()["first_unsupported"]
    assert_full_int8(model)
    dilated = [op for op in model.ops if op.name == "DEPTHWISE_CONV_2D" and op.options["dilation_h_factor"] == 2]
    assert dilated and all(op.options["dilation_w_factor"] == 2 for op in dilated)
    errors = lowering_agrees(genome, TINY_NETWORK, model, SIZE)
    assert all(abs(e) < 0.05 for e in errors.values()), errors


def test_the_training_form_and_a_float_model_would_fall_back(cifar: ExportData) -> None:
    """Why the export form exists: the training form's strided slices (and its SUM for the mean) are outside
    the supported set, and the graph splits at the first one. A float model maps nothing."""
    genome = spaces.named_genome("amoebanet-a")
    variables = random_variables(genome, TINY_NETWORK, SIZE)
    floating = read_tflite(export_float(genome, TINY_NETWORK, variables, (SIZE, SIZE), 10))
    report = check(floating)
    assert not report.all_quantized and report.ops_mapped == 0
    assert report.first_unsupported is not None and "float32" in report.first_unsupported.reason
    plain = read_tflite(export_int8(genome, TINY_NETWORK, variables, cifar.representative, 10, edgetpu=False))
    report = check(plain)
    assert report.first_unsupported is not None and report.first_unsupported.name == "STRIDED_SLICE"
    assert 0 < report.ops_mapped < report.ops_total
    assert {"STRIDED_SLICE", "SLICE", "SUM"} <= set(report.unmapped)
    # The simulator splits where the check does: everything from the first strided slice on runs on the CPU.
    latency = estimate(tflite_graph(plain, report), "usb3")
    assert "STRIDED_SLICE" in latency.fallback_ops and latency.cpu_ms > 0


def _train(genome: Genome, network: dict[str, int], images: np.ndarray, labels: np.ndarray, steps: int) -> Any:
    """A brief training run (the worker's own step, the tiny preset's settings): the host variables."""
    model = build_model(genome, network, num_classes=10, bn_momentum=0.9)
    tx = make_optimizer(TINY, steps)
    with conv_impl("xla"):
        state = jax.jit(lambda k: init_state(model, tx, k, jnp.zeros((1, SIZE, SIZE, 3))))(jax.random.key(0))
        step = jax.jit(make_train_step(model, tx, TINY, 10, CIFAR_MEAN, CIFAR_STD))
        rng = np.random.default_rng(0)
        for _ in range(steps):
            idx = rng.choice(len(labels), TINY.batch_size, replace=False)
            state, _ = step(state, images[idx], labels[idx], jax.random.key(1))
    return {"params": jax.device_get(state.params), "batch_stats": jax.device_get(state.batch_stats)}


def test_a_trained_child_float_against_int8_accuracy(tmp_path: Path) -> None:
    """NB201 (N = 1, 8 channels, 16x16) trained for a few dozen steps on the learnable fixture, exported;
    LiteRT runs the float and the int8 model on the test split."""
    archive = write_cifar_archive(tmp_path / "cifar", per_batch=100, test_size=200)
    train = load_cifar10(archive, "final").train
    genome, network = spaces.parse_genome(NB201), {"cells": 1, "filters": 8}
    variables = _train(genome, network, resize_area(train.images, SIZE), train.labels, steps=40)
    data = cifar_export_data(archive, image_size=SIZE, representative=128)
    doc = export_individual(genome, network, variables, data, tmp_path / "nb201.tflite", "usb2")
    assert doc["test_examples"] == 200 and doc["representative_examples"] == 128
    assert doc["float_accuracy"] >= 0.8, doc
    assert abs(doc["float_accuracy"] - doc["int8_accuracy"]) <= 0.05, doc
    assert doc["ops_mapped"] == doc["ops_total"] and doc["device"] == "usb2"
    model = read_tflite(doc["out"])
    assert_full_int8(model)
    errors = lowering_agrees(genome, network, model, SIZE)
    assert all(abs(e) < 0.05 for e in errors.values()), errors


def test_an_imagenet_child_calibrates_on_train_and_is_scored_on_val(tmp_path: Path) -> None:
    """ImageNet's class folders feed the export as CIFAR's archive does: calibration images drawn from every
    class of train/, the val/ images scored, the model's input at the training size and one logit per class."""
    root = write_imagenet_folders(tmp_path / "imagenet", train_per_class=6, val_per_class=3)
    data = imagenet_export_data(root, image_size=SIZE, representative=9)
    assert (data.dataset, data.num_classes, data.representative.shape) == ("imagenet", 3, (9, SIZE, SIZE, 3))
    assert sorted(data.test_labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # every val image, every class
    assert len(imagenet_export_data(root, image_size=SIZE, representative=9, test_limit=4).test_labels) == 4
    genome, network = spaces.parse_genome(NB201), {"cells": 1, "filters": 8}
    with conv_impl("xla"):
        variables = init_variables(build_model(genome, network, num_classes=3, dataset="imagenet"),
                                   (1, SIZE, SIZE, 3), 0)
    doc = export_individual(genome, network, jax.device_get(variables), data, tmp_path / "imagenet.tflite")
    assert doc["ops_mapped"] == doc["ops_total"] and doc["test_examples"] == 9, doc
    assert 0.0 <= doc["int8_accuracy"] <= 1.0 and doc["representative_examples"] == 9
    model = read_tflite(doc["out"])
    assert_full_int8(model)
    assert model.tensor(model.inputs[0]).shape == (1, SIZE, SIZE, 3)
    assert model.tensor(model.outputs[0]).shape == (1, 3)
    with pytest.raises(DatasetUnavailable, match="ImageNet not found"):
        imagenet_export_data(tmp_path / "nowhere", image_size=SIZE)


def test_latency_tflite_reads_the_export_without_jax_or_tensorflow(tiny_export: tuple[dict[str, Any], TfliteModel]) -> None:
    doc, _ = tiny_export
    script = (
        "import sys, json, io, contextlib, typer\n"
        "from cli import latency\n"
        "app = typer.Typer(); latency.register(app)\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    app(['--tflite', {doc['out']!r}, '--device', 'usb2', '--json'], standalone_mode=False)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'flax', 'tensorflow', 'nets'})\n"
        "print(json.dumps({'heavy': heavy, 'doc': json.loads(out.getvalue())}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["heavy"] == []
    out = result["doc"]
    assert out["source"] == {"tflite": doc["out"], "bytes": doc["bytes"]}
    assert out["edgetpu"]["ops_mapped"] == out["edgetpu"]["ops_total"] == doc["ops_total"]
    assert out["edgetpu"]["unmapped"] == [] and out["fallback_ops"] == [] and out["device"] == "usb2"
    assert out["latency_ms"] > 0 and out["layers"]
    text = amoeba("latency", "--tflite", doc["out"], "--top", "3")
    assert text.returncode == 0, text.stderr
    assert "operators map to the Edge TPU" in text.stdout and "tiny.tflite (TFLite" in text.stdout


def test_bad_files_and_a_missing_extra_are_one_line_errors(tiny_export: tuple[dict[str, Any], TfliteModel],
                                                          tmp_path: Path) -> None:
    doc, _ = tiny_export
    text = tmp_path / "notes.tflite"
    text.write_text("not a model\n")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(Path(doc["out"]).read_bytes()[:64])
    for path, words in ((text, "is not a TFLite model"), (truncated, "is not a readable TFLite model"),
                        (tmp_path / "absent.tflite", "cannot read")):
        proc = amoeba("latency", "--tflite", str(path))
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], proc.stderr
    proc = amoeba("latency", "--tflite", doc["out"], "--cells", "2")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    # Without the extra (LiteRT made unimportable): the install hint, on one line.
    script = ("import sys\nsys.modules['ai_edge_litert'] = None\nfrom cli.main import main\n"
              f"main(['latency', '--tflite', {doc['out']!r}])\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          cwd=ROOT)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'amoeba-nas[export]'" in lines[0], proc.stderr
