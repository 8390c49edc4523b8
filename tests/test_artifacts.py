"""The artifact store as a user relies on it: weights written through a Trial, checked by sha256 on read, named
in the database per individual, bounded by retention over a long run, on a folder and on a real S3 endpoint
(moto's standalone server on loopback), and listed by ``amoeba artifacts``."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from artifacts.store import (
    MANIFEST,
    WEIGHTS,
    ArtifactError,
    ArtifactStore,
    read_artifact,
    read_manifest,
    write_artifact,
)
from db import open_store, upgrade
from domain import Artifact, InvalidArgument, Lease, Metrics, WorkerInfo
from orchestrator import rules
from orchestrator.server import ServerConfig, start
from orchestrator.service import OrchestratorService
from tests.builders import Clock, nb201_metrics, spec

pytestmark = pytest.mark.grpc

W = WorkerInfo("w-1", "host", "python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint on loopback (moto's standalone server) with a bucket ``amoeba-test``."""
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    mp = pytest.MonkeyPatch()
    # What a user of MinIO or Ceph sets: the endpoint and credentials, read by botocore (and so by s3fs).
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        mp.setenv(key, value)
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="amoeba-test")
    try:
        yield endpoint
    finally:
        mp.undo()
        server.stop()


@pytest.fixture(params=["local", "s3"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3_endpoint")
    return f"s3://amoeba-test/{request.node.name.replace('[', '-').replace(']', '')}"


def _fs_and_path(uri: str) -> tuple[Any, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


# --- the store -----------------------------------------------------------------------------------------


def test_weights_round_trip_with_their_manifest_and_checksum(base: str) -> None:
    store = ArtifactStore(base)
    uri = store.uri_for("exp one", 7, "abc123")
    assert uri.startswith(base + "/exp_one/0000007-abc123") and store.owns(uri)
    weights = bytes(range(256)) * 100
    art = write_artifact(uri, weights, {"fingerprint": "abc123", "metrics": {"accuracy": 0.5}})
    assert art == Artifact(uri, hashlib.sha256(weights).hexdigest(), len(weights))
    assert read_artifact(art) == weights
    manifest = read_manifest(art)
    assert (manifest["fingerprint"], manifest["sha256"], manifest["bytes"]) == ("abc123", art.sha256, len(weights))
    assert store.usage() == (1, len(weights))


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "deleted"])
def test_a_damaged_artifact_is_one_clear_error_and_never_loaded(base: str, damage: str) -> None:
    store = ArtifactStore(base)
    art = write_artifact(store.uri_for("e", 1, "f"), b"\x01" * 1000, {})
    fs, path = _fs_and_path(art.uri)
    if damage == "deleted":
        fs.rm(f"{path}/{WEIGHTS}")
    else:
        with fs.open(f"{path}/{WEIGHTS}", "wb") as fh:
            fh.write(b"\x01" * 999 if damage == "truncated" else b"\x02" * 1000)
    with pytest.raises(ArtifactError) as info:
        read_artifact(art)
    message = str(info.value)
    assert "\n" not in message and art.uri in message and "missing" in message


def test_retention_never_deletes_outside_the_store(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "weights.msgpack").write_bytes(b"mine")
    store = ArtifactStore(str(tmp_path / "store"))
    inside = write_artifact(store.uri_for("e", 0, "f"), b"w", {})
    assert store.discard([str(outside), inside.uri, store.base + "/e/0000009-gone"]) == 2
    assert (outside / "weights.msgpack").read_bytes() == b"mine"
    assert store.usage() == (0, 0)


def test_an_unwritable_store_is_the_store_s_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ArtifactError, match="cannot write the artifact store"):
        write_artifact(f"{blocker}/e/0000001-f", b"w", {})
    with pytest.raises(ArtifactError, match="artifact store needs"):
        ArtifactStore("  ")
    with pytest.raises(ArtifactError, match="cannot use the artifact store"):
        ArtifactStore("nosuchprotocol://x/y")


# --- the service: leases name the folder, reports are checked, retention bounds the store -------------------


def _service(tmp_path: Path, store: ArtifactStore | None, **changes: Any) -> OrchestratorService:
    url = f"sqlite:///{tmp_path / 'amoeba.db'}"
    upgrade(url)
    service = OrchestratorService(open_store(url), clock=Clock(), artifacts=store)
    service.create_experiment(spec("art", **changes))
    return service


def _train(lease: Lease, size: int = 64) -> Metrics:
    """What a worker does: write weights where the lease says, report them with the metrics."""
    weights = hashlib.sha256(lease.genome_json.encode()).digest() * (size // 32)
    art = write_artifact(lease.artifact_uri, weights, {"seq": lease.proposal_seq})
    m = nb201_metrics(lease)
    return Metrics(accuracy=m.accuracy, latency_ms=m.latency_ms, artifact=art)


def test_a_report_naming_another_folder_or_without_a_store_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    service = _service(tmp_path, store)
    try:
        got = service.lease(W, "art")
        assert isinstance(got, Lease) and got.artifact_uri == store.uri_for("art", got.proposal_seq, _fp(got))
        metrics = _train(got)
        assert metrics.artifact is not None
        before = service.list_individuals("art", 10, "", None).individuals
        for bad, match in [(Artifact(str(tmp_path / "elsewhere"), metrics.artifact.sha256, 64), "not the one leased"),
                           (Artifact(got.artifact_uri, "XYZ", 64), "sha256 must be 64"),
                           (Artifact(got.artifact_uri, metrics.artifact.sha256, -1), "artifact bytes")]:
            if match == "artifact bytes":
                with pytest.raises(InvalidArgument, match="initial_accuracy must be between 0 and 1"):
                    service.report(got.individual_id, got.token, W.worker_id, Metrics(0.5, initial_accuracy=1.5))
            with pytest.raises(InvalidArgument, match=match):
                service.report(got.individual_id, got.token, W.worker_id, Metrics(0.5, artifact=bad))
        assert service.list_individuals("art", 10, "", None).individuals == before
        service.report(got.individual_id, got.token, W.worker_id, metrics)
        row = service.list_individuals("art", 10, "", "completed").individuals[0]
        assert (row.artifact, row.artifact_state) == (metrics.artifact, "kept")
    finally:
        service.store.close()
    (tmp_path / "bare").mkdir()
    bare = _service(tmp_path / "bare", None)
    try:
        got = bare.lease(W, "art")
        assert isinstance(got, Lease) and got.artifact_uri == "" and got.parent_artifact is None
        with pytest.raises(InvalidArgument, match="keeps no artifacts"):
            bare.report(got.individual_id, got.token, W.worker_id,
                        Metrics(0.5, artifact=Artifact("x", "0" * 64, 1)))
    finally:
        bare.store.close()


def _fp(lease: Lease) -> str:
    import spaces

    return spaces.parse_genome(lease.genome_json, lease.space).fingerprint


def _kept(service: OrchestratorService) -> dict[int, Artifact]:
    rows = service.list_individuals("art", 10_000, "", None).individuals
    return {r.proposal_seq: r.artifact for r in rows if r.artifact is not None}


def test_retention_keeps_population_top_k_and_needed_parents_over_a_long_run(tmp_path: Path) -> None:
    # P = 6, K = 3, three children in flight at every moment, 72 evaluations: the store never holds more than
    # P + K + 2 x in flight (the children being trained, and dead parents a child still needs) folders.
    population, keep, in_flight = 6, 3, 3
    store = ArtifactStore(str(tmp_path / "store"))
    service = _service(tmp_path, store, population=population, sample=2, evaluations=72, artifacts={"keep": keep})
    try:
        held: list[Lease] = []
        peak, reports = 0, 0
        while True:
            while len(held) < in_flight:
                got = service.lease(W, "art")
                if not isinstance(got, Lease):
                    break
                if got.parent_seq is not None:
                    # The parent's weights come with the lease while retention keeps them.
                    assert got.parent_artifact == _kept(service).get(got.parent_seq)
                held.append(got)
            if not held:
                break
            lease = held.pop(0)
            metrics = _train(lease)
            folders = store.usage("art")[0]  # a moment: the weights written, the report not yet sent
            peak = max(peak, folders)
            assert folders <= population + keep + 2 * in_flight
            service.report(lease.individual_id, lease.token, W.worker_id, metrics)
            reports += 1
        status = service.status("art")
        assert (status["state"], status["completed"], reports) == ("done", 72, 72)
        kept = _kept(service)
        population_seqs = {r.proposal_seq for r in service.list_individuals("art", 10_000, "", None).individuals
                           if r.in_population}
        with service.store.transaction() as tx:
            exp = tx.experiment("art")
            assert exp is not None
            top = {r.proposal_seq for r in tx.top(exp.id, keep)}
        # At the end exactly the population and the top K are kept, every one readable, nothing else on disk.
        assert set(kept) == population_seqs | top
        assert store.usage("art")[0] == len(kept) <= population + keep
        for art in kept.values():
            read_artifact(art)
        assert 0 < peak <= population + keep + 2 * in_flight
        deleted = [r for r in service.list_individuals("art", 10_000, "", None).individuals
                   if r.artifact_state == "deleted"]
        assert len(deleted) == 72 - len(kept)
    finally:
        service.store.close()


def test_keep_all_deletes_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    service = _service(tmp_path, store, population=4, sample=2, evaluations=16, artifacts={"keep": "all"})
    try:
        while isinstance(got := service.lease(W, "art"), Lease):
            service.report(got.individual_id, got.token, W.worker_id, _train(got))
        assert len(_kept(service)) == 16 == store.usage("art")[0]
    finally:
        service.store.close()


def test_the_retention_rule_is_pure() -> None:
    kept = [rules.Kept(1, 10, True), rules.Kept(2, 11, False), rules.Kept(3, 12, False), rules.Kept(4, 13, False)]
    assert rules.doomed_artifacts(kept, top={12}, needed={13}) == [2]
    assert rules.doomed_artifacts(kept, top=set(), needed=set()) == [2, 3, 4]


@pytest.mark.parametrize("bad", [{"keep": -1}, {"keep": "some"}, {"keep": 1.5}, {"keep": True}, {"retain": 3}, "all"])
def test_artifact_settings_are_checked_at_create(bad: Any) -> None:
    with pytest.raises(InvalidArgument, match="artifacts"):
        spec("art", artifacts=bad)


# --- through gRPC: a user's loop saves weights through its Trial, on a folder and on S3 ----------------------


def test_trials_save_and_load_weights_over_grpc(base: str, tmp_path: Path) -> None:
    import amoeba

    store = ArtifactStore(base)
    service = _service(tmp_path, store, population=4, sample=2, evaluations=12, artifacts={"keep": 2})
    server = start(service, ServerConfig(port=0))
    inherited: list[bool] = []
    try:
        with amoeba.Client(server.address) as client:
            for trial in client.trials("art", "w-grpc"):
                assert trial.artifact_uri.startswith(base + "/art/")
                parent = trial.load_parent()
                if trial.parent_artifact is not None:
                    assert parent is not None and parent.startswith(b"weights of ")
                    inherited.append(True)
                trial.save_artifact(b"weights of %d " % trial.proposal_seq + b"\x00" * 500, {"note": "mine"})
                # A user's inheritance figures travel with the report: history.csv's inherited_params, initial_accuracy.
                trial.report(accuracy=nb201_metrics(trial.lease).accuracy, inherited_params=len(parent or b""),
                             initial_accuracy=0.1 if parent else 0.0)
            status = client.status("art")
            assert (status["state"], status["completed"]) == ("done", 12)
            rows = list(client.individuals("art", state="completed"))
        assert inherited, "children of kept parents get the parent's weights"
        assert all(r.inherited_params is not None and r.initial_accuracy is not None for r in rows)
        assert {r.initial_accuracy for r in rows if r.inherited_params} == {0.1}
        kept = [r for r in rows if r.artifact is not None]
        assert kept and all(r.artifact_state == "kept" for r in kept)
        for r in kept:
            assert r.artifact is not None
            assert read_artifact(r.artifact).startswith(b"weights of %d " % r.proposal_seq)
            manifest = read_manifest(r.artifact)
            assert (manifest["note"], manifest["proposal_seq"], manifest["space"]) == ("mine", r.proposal_seq, "nb201")
            assert manifest["fingerprint"] == r.fingerprint and "versions" in manifest
        assert store.usage("art")[0] == len(kept)
    finally:
        server.stop()
        service.store.close()


def test_a_worker_that_cannot_write_the_store_fails_the_evaluation(tmp_path: Path) -> None:
    # The store's folder turns into a file after the server started: every write fails, and no result is
    # reported without the weights it was to keep.
    root = tmp_path / "store"
    store = ArtifactStore(str(root))
    service = _service(tmp_path, store, population=4, sample=2, evaluations=4, max_consecutive_failures=2)
    root.write_text("the disk is gone")
    server = start(service, ServerConfig(port=0))
    try:
        from protos.client import OrchestratorClient
        from worker.evaluators import FunctionEvaluator
        from worker.loop import Worker, WorkerConfig

        def evaluate(trial: Any) -> dict[str, float]:
            trial.save_artifact(b"weights")
            return {"accuracy": 0.5}

        client = OrchestratorClient(server.address)
        worker = Worker(client, FunctionEvaluator(evaluate, "saver"), WorkerConfig(experiment="art", max_evaluations=2))
        summary = worker.run()
        client.close()
        assert summary.failed == 2 and summary.evaluated == 0
        failed = service.list_individuals("art", 10, "", "failed").individuals
        assert failed and all("cannot write the artifact store" in (r.failure_reason or "") for r in failed)
        assert service.status("art")["completed"] == 0
    finally:
        server.stop()
        service.store.close()


# --- amoeba artifacts ---------------------------------------------------------------------------------------


def test_amoeba_artifacts_lists_and_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    store = ArtifactStore(str(tmp_path / "store"))
    service = _service(tmp_path, store, population=4, sample=2, evaluations=10, artifacts={"keep": 1})
    try:
        while isinstance(got := service.lease(W, "art"), Lease):
            service.report(got.individual_id, got.token, W.worker_id, _train(got))
    finally:
        service.store.close()
    db = f"sqlite:///{tmp_path / 'amoeba.db'}"
    with pytest.raises(SystemExit) as exit_info:
        main(["artifacts", "--db", db, "--experiment", "art", "--json"])
    assert exit_info.value.code in (0, None)
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 10 and all(set(row) == {"seq", "uri", "sha256", "bytes", "state"} for row in listed)
    assert [r["seq"] for r in listed] == sorted(r["seq"] for r in listed)
    kept = [r for r in listed if r["state"] == "kept"]
    assert 1 <= len(kept) <= 5 and {r["state"] for r in listed} == {"kept", "deleted"}
    with pytest.raises(SystemExit) as exit_info:
        main(["artifacts", "--db", db, "--experiment", "art", "--verify"])
    assert exit_info.value.code in (0, None)
    assert "kept of 10 stored" in capsys.readouterr().out
    # Damage one: --verify names it in one line and exits non-zero.
    victim = kept[0]["uri"]
    Path(victim, WEIGHTS).write_bytes(b"overwritten")
    with pytest.raises(SystemExit) as exit_info:
        main(["artifacts", "--db", db, "--experiment", "art", "--verify"])
    assert exit_info.value.code == 2  # a user-facing error, as every command's
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing or damaged" in err and victim in err
    assert (Path(victim) / MANIFEST).is_file()
