"""``amoeba export``: a trained individual's kept weights to a full-int8 TFLite model for the Edge TPU.

``--json`` prints ``{"out", "bytes", "float_accuracy", "int8_accuracy", "ops_total", "ops_mapped",
"unmapped", "latency_ms", ...}`` (``export.run.export_individual``) plus ``experiment``, ``proposal_seq``
and ``artifact``. Needs the ``export`` extra (TensorFlow's converter, LiteRT); the weights come from the
artifact store, checked against the sha256 the database holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import UserError
from domain.errors import AmoebaError

FORMATS = ("tflite-int8",)


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def export(
    db_url: Annotated[str, typer.Option("--db", help="database URL or SQLite file, opened read-only")],
    out: Annotated[Path, typer.Option("--out", help="the .tflite file to write")],
    experiment: Annotated[str | None, typer.Option(help="experiment name (default: the newest running one)")] = None,
    best: Annotated[bool, typer.Option("--best", help="the experiment's best individual")] = False,
    individual: Annotated[int | None, typer.Option("--individual", help="the individual with this proposal number")] = None,
    fmt: Annotated[str, typer.Option("--format", help="tflite-int8: full-integer post-training quantization")] = "tflite-int8",
    data_dir: Annotated[str | None, typer.Option(envvar="AMOEBA_DATA_DIR", help="folder holding cifar-10-python.tar.gz (default: the cache), or ImageNet's train/ and val/ class folders")] = None,
    device: Annotated[str, typer.Option(help="Edge TPU device the latency is simulated for (usb3, usb2, pcie, devboard)")] = "usb3",
    representative: Annotated[int, typer.Option(help="training images that calibrate the int8 ranges")] = 256,
    test_limit: Annotated[int | None, typer.Option(help="test images to score float and int8 on (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the export report as JSON")] = False,
) -> None:
    """Export a trained individual as a full-int8 TFLite model, check it for the Edge TPU and score float vs int8."""
    if best == (individual is not None):
        raise UserError("give either --best or --individual SEQ")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out.suffix != ".tflite":
        raise UserError(f"--out must be a .tflite file, got {out}")
    if representative < 1 or (test_limit is not None and test_limit < 1):
        raise UserError("--representative and --test-limit must be >= 1")
    name, ind, artifact, manifest, weights = _trained(db_url, experiment, individual)
    genome, network, num_classes, image_size, dataset = _network(ind, manifest)
    if dataset == "imagenet" and not data_dir:
        raise UserError(f"individual {ind.proposal_seq} was trained on ImageNet: give --data-dir DIR with "
                        "DIR/train/<class>/*.JPEG (calibration) and DIR/val/<class>/*.JPEG (scoring)")
    try:
        from flax import serialization

        from export.data import cifar_export_data, imagenet_export_data
        from export.run import export_individual, report_lines
        from worker.training.data_cifar import cache_root, locate_cifar10

        variables = serialization.msgpack_restore(weights)
        if dataset == "imagenet":
            assert data_dir is not None
            data = imagenet_export_data(data_dir, image_size=image_size, representative=representative,
                                        test_limit=test_limit)
        else:
            source = locate_cifar10(data_dir, cache_dir=cache_root() / "cifar10", download=False, progress=False)
            data = cifar_export_data(source, image_size=image_size, representative=representative,
                                     test_limit=test_limit)
        if data.num_classes != num_classes:
            raise UserError(f"the weights classify {num_classes} classes, the data has {data.num_classes}")
        doc = export_individual(genome, network, variables, data, out, device)
    except AmoebaError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(str(exc)) from None
    doc = {**doc, "experiment": name, "proposal_seq": ind.proposal_seq, "artifact": artifact.uri}
    if as_json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return
    print(f"{name} #{ind.proposal_seq} ({ind.fingerprint}) from {artifact.uri}")
    for line in report_lines(doc):
        print(line)


def _trained(db_url: str, experiment: str | None, seq: int | None) -> tuple[str, Any, Any, dict[str, Any], bytes]:
    """The chosen individual with its artifact, manifest and weights (sha256-checked), or one user-facing line."""
    from artifacts.store import ArtifactError, read_artifact, read_manifest
    from cli.status import open_readmodel
    from orchestrator.service import to_individual

    with open_readmodel(db_url) as model:
        exp = model.experiment(experiment)
        with model.db.store.transaction() as tx:
            if seq is None:
                rows = tx.top(exp.id, 1)
                if not rows:
                    raise UserError(f"experiment {exp.name} has no completed individual yet")
                row = rows[0]
            else:
                found = tx.individuals(exp.id, seq - 1, 1)
                if not found or found[0].proposal_seq != seq:
                    raise UserError(f"experiment {exp.name} has no individual {seq}")
                row = found[0]
    ind = to_individual(exp.name, row)
    if ind.artifact is None:
        why = ("retention deleted its weights" if ind.artifact_state == "deleted"
               else "it has no weights kept (the run had no artifact store, or it did not complete)")
        raise UserError(f"individual {ind.proposal_seq} of {exp.name} cannot be exported: {why}; "
                        f"train it again: amoeba retrain --db {db_url} --experiment {exp.name}")
    try:
        weights = read_artifact(ind.artifact)
        manifest = read_manifest(ind.artifact)
    except ArtifactError as exc:
        raise UserError(str(exc)) from None
    return exp.name, ind, ind.artifact, manifest, weights


def _network(ind: Any, manifest: dict[str, Any]) -> tuple[Any, dict[str, Any], int, int, str]:
    """The genome and the network, classes, image size and dataset it was trained with (from the manifest)."""
    import spaces

    try:
        genome = spaces.parse_genome(json.loads(ind.genome_json))
        network = dict(manifest["network"])
        config = manifest["training_config"]
        return genome, network, int(manifest["num_classes"]), int(config["image_size"]), str(config["dataset"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"the manifest of individual {ind.proposal_seq} does not say how it was trained "
                        f"(missing {exc}); it was not written by the train evaluator") from None
    except AmoebaError as exc:
        raise UserError(f"individual {ind.proposal_seq}: {exc}") from None
