"""The seed's trade-off, shown by the simulator (``amoeba latency --blocks``), and compound scaling (``amoeba
scale``): both commands run without JAX."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import spaces
from cli.main import main
from latency.edgetpu import ROW_KINDS, block_table

pytestmark = pytest.mark.unit


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    return [r.to_json() for r in block_table("usb3")]


def _pick(rows: list[dict[str, object]], stage: int, kind: str, kernel: int = 3,
          expansion: int | None = None) -> dict[str, object]:
    return next(r for r in rows if (r["stage"], r["kind"], r["kernel"], r["expansion"]) == (stage, kind, kernel, expansion))


def test_the_regular_convolution_uses_the_array_far_better_and_wins_early(rows: list[dict[str, object]]) -> None:
    """The EfficientNet-EdgeTPU blog: a regular 3x3 convolution has more MACs than a depthwise-separable one
    but, thanks to ~3x better utilization, runs faster for some shapes, which the searched model uses in its
    early part; late in the network the separable one wins."""
    stages = sorted({int(r["stage"]) for r in rows})  # type: ignore[call-overload]
    assert stages == list(range(6))
    faster_regular = []
    for stage in stages:
        conv, sep = _pick(rows, stage, "conv"), _pick(rows, stage, "separable")
        assert (conv["input"], conv["output"]) == (sep["input"], sep["output"])
        assert conv["macs"] > 5 * sep["macs"]  # type: ignore[operator]
        assert conv["utilization"] > 2.5 * sep["utilization"]  # type: ignore[operator]
        faster_regular.append(conv["ms"] < sep["ms"])  # type: ignore[operator]
    # Early, wide-spatial shapes (112x112 and 56x56 inputs): the regular one is faster despite its MACs ...
    assert faster_regular[:2] == [True, True]
    # ... and at the late, narrow stages the separable one wins.
    assert faster_regular[-3:] == [False, False, False]
    assert _pick(rows, 0, "conv")["input"] == [112, 112, 32] and _pick(rows, 5, "conv")["output"] == [7, 7, 192]


def test_the_simulator_agrees_with_the_searched_s(rows: list[dict[str, object]]) -> None:
    """At S's own kernel and expansion, the fused block is the faster one in the three stages where S uses it,
    MBConv where S uses MBConv."""
    s = spaces.named_genome("efficientnet-edgetpu-s")
    for stage, chosen in enumerate(s.stages):  # type: ignore[attr-defined]
        fused = _pick(rows, stage, "fused", chosen.kernel, chosen.expansion)
        mbconv = _pick(rows, stage, "mbconv", chosen.kernel, chosen.expansion)
        faster = "fused" if fused["ms"] < mbconv["ms"] else "mbconv"  # type: ignore[operator]
        assert faster == chosen.block, f"stage {stage}"


def test_blocks_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "latency", "--blocks", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert isinstance(doc, list) and len(doc) == 6 * (2 + 2 * 2 * 2)
    for row in doc:
        assert set(row) == {"stage", "input", "output", "kind", "kernel", "expansion", "macs", "utilization", "ms"}
        assert row["kind"] in ROW_KINDS and row["kind"] in ("conv", "separable", "fused", "mbconv")
        assert (row["expansion"] is None) == (row["kind"] in ("conv", "separable"))
        assert row["macs"] > 0 and 0 < row["utilization"] < 1 and row["ms"] > 0
        assert len(row["input"]) == len(row["output"]) == 3
    # The device changes the link, not the chip: usb2 prices the layers alike, but for activations that spill
    # (an MBConv block's 112x112x192 expansion does not fit the 3 MiB activation memory) and cross the slower link.
    code, out2, _ = _run(capsys, "latency", "--blocks", "--json", "--device", "usb2")
    usb2 = json.loads(out2)
    assert code == 0 and all(a["ms"] >= b["ms"] for a, b in zip(usb2, doc, strict=True))
    assert sum(a["ms"] == b["ms"] for a, b in zip(usb2, doc, strict=True)) > len(doc) - 5
    code, out3, _ = _run(capsys, "latency", "--blocks", "--json", "--clock", "250")
    assert code == 0 and json.loads(out3)[0]["ms"] == pytest.approx(2 * doc[0]["ms"], rel=0.01)


def test_blocks_table_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "latency", "--blocks")
    assert code == 0, err
    assert "separable" in out and "mbconv" in out and "112x112x32" in out
    assert "stage 0: the regular convolution is faster" in out and "stage 5: the separable convolution is faster" in out


@pytest.mark.parametrize("argv", [
    ["latency", "--blocks", "--genome", "efficientnet-edgetpu-s"],
    ["latency", "--blocks", "--model", "mobilenet_v1"],
    ["latency", "--blocks", "--cells", "3"],
    ["latency", "--blocks", "--device", "tpu9"],
    ["latency", "--blocks", "--input", "4"],
])
def test_blocks_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2 and err.startswith("amoeba: error:") and err.count("\n") == 1


# --- compound scaling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("to", "published", "size"), [("M", 6.9e6, 240), ("L", 10.6e6, 300)])
def test_scale_s_to_m_and_l(capsys: pytest.CaptureFixture[str], tmp_path: Path, to: str, published: float,
                            size: int) -> None:
    code, out, err = _run(capsys, "scale", "--genome", "efficientnet-edgetpu-s", "--to", to, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"genome", "fingerprint", "summary", "depth", "width", "input", "num_classes", "params",
                        "mult_adds", "latency_ms", "fits_on_chip", "device", "clock_mhz"}
    assert doc["params"] == pytest.approx(published, rel=0.05)
    assert doc["input"] == size and doc["device"] == "usb3" and doc["num_classes"] == 1000
    # The scaled genome is an ordinary genome: latency takes it (at its resolution) and gives the same figure.
    genome = spaces.parse_genome(doc["genome"])
    assert genome == spaces.named_genome(f"efficientnet-edgetpu-{to.lower()}")
    path = tmp_path / "scaled.json"
    path.write_text(json.dumps(doc["genome"]))
    code, out, err = _run(capsys, "latency", "--genome", str(path), "--input", str(size), "--json")
    assert code == 0, err
    priced = json.loads(out)
    assert priced["latency_ms"] == pytest.approx(doc["latency_ms"], abs=1e-3)
    assert (priced["params"], priced["macs"]) == (doc["params"], doc["mult_adds"])


def test_scale_by_coefficients_and_from_a_scaled_genome(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "scale", "--genome", "efficientnet-edgetpu-s", "--depth", "1.4", "--width", "1.2",
                        "--resolution", "300", "--json")
    by_hand = json.loads(out)
    code2, out2, _ = _run(capsys, "scale", "--genome", "efficientnet-edgetpu-m", "--to", "L", "--json")
    assert code == code2 == 0
    # Coefficients are relative to the searched stages: M rescaled to L is L.
    assert json.loads(out2)["genome"] == by_hand["genome"]
    code, out, _ = _run(capsys, "scale", "--genome", "efficientnet-edgetpu-l", "--to", "S", "--json")
    s_doc = json.loads(out)
    assert code == 0 and "scale" not in s_doc["genome"] and s_doc["params"] == pytest.approx(5.4e6, rel=0.05)
    code, out, _ = _run(capsys, "scale", "--genome", "efficientnet-edgetpu-s", "--to", "M")
    assert code == 0 and "parameters" in out and "latency" in out and '"scale":{"depth":1.1' in out


@pytest.mark.parametrize("argv", [
    ["--genome", "efficientnet-edgetpu-s"],
    ["--genome", "efficientnet-edgetpu-s", "--to", "M", "--depth", "2"],
    ["--genome", "efficientnet-edgetpu-s", "--to", "XL"],
    ["--genome", "efficientnet-edgetpu-s", "--depth", "0"],
    ["--genome", "efficientnet-edgetpu-s", "--width", "nan"],
    ["--genome", "efficientnet-edgetpu-s", "--resolution", "2"],
    ["--genome", "efficientnet-edgetpu-s", "--to", "M", "--device", "tpu9"],
    ["--genome", "amoebanet-a", "--to", "M"],
    ["--genome", "no-such-genome", "--to", "M"],
])
def test_scale_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = _run(capsys, "scale", *argv)
    assert code == 2 and err.startswith("amoeba: error:") and err.count("\n") == 1, err
