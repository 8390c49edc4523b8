"""The wire protocol: committed generated code is current, and the codec round-trips every value."""

from __future__ import annotations

import math

import pytest
from worker.client import NoWorkNow, WorkLease

from domain import Experiment, ExperimentSpec, Individual, Lease, Metrics, NoWork, WorkerInfo
from protos import codec, generate
from protos.amoeba.v1 import orchestrator_pb2 as pb
from worker.evaluator import Metrics


def test_committed_generated_code_matches_a_fresh_generation() -> None:
    assert generate.check() == []


def test_check_notices_a_changed_generated_file(tmp_path, monkeypatch) -> None:
    # Point the checker at a copy whose generated module was edited: it must name that file.
    root = tmp_path / "repo"
    (root / generate.PROTO_DIR).mkdir(parents=True)
    for p in (generate.ROOT / generate.PROTO_DIR).iterdir():
        if p.is_file():
            (root / generate.PROTO_DIR / p.name).write_bytes(p.read_bytes())
    target = root / generate.PROTO_DIR / "orchestrator_pb2_grpc.py"
    target.write_text(target.read_text().replace("def LeaseWork", "def LeaseWorkRenamed", 1))
    monkeypatch.setattr(generate, "ROOT", root)
    assert generate.check() == ["orchestrator_pb2_grpc.py"]


def test_service_has_one_request_response_pair_per_rpc() -> None:
    service = pb.DESCRIPTOR.services_by_name["Orchestrator"]
    assert service.full_name == "amoeba.v1.Orchestrator"
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
    assert {m.name for m in service.methods} >= {
        "CreateExperiment", "GetExperiment", "ListExperiments", "LeaseWork", "Heartbeat", "ReportResult",
        "ReportFailure", "ReleaseLease", "GetStatus", "ListIndividuals",
    }


SPEC = ExperimentSpec(
    name="e1", space="nb201", population_size=10, sample_size=3, evaluations=300, seed=7, algorithm="non-aging",
    mutation={"type": "edge_op"}, objective={"kind": "accuracy"}, training={"table": {"sleep_s": [0.1, 0.2]}},
    lease_timeout_s=12.5, max_attempts=4,
)


def test_spec_and_experiment_round_trip_through_bytes() -> None:
    exp = Experiment(3, SPEC, "running", 1795000000.25, 12, 9, 1, 2)
    wire = pb.Experiment.FromString(codec.encode_experiment(exp).SerializeToString())
    assert codec.decode_experiment(wire, Experiment, ExperimentSpec) == exp


@pytest.mark.parametrize("parent", [None, 0, 41])
def test_lease_round_trips_into_domain_and_worker_values(parent: int | None) -> None:
    lease = Lease(
        experiment="e1", individual_id=5, proposal_seq=41 if parent is None else 42, token="t0k", deadline=1795000010.5,
        attempt=2, genome={"space": "nb201", "edges": ["none"] * 6}, space="nb201", seed=99, training={"epochs": 2},
        parent_seq=parent, mutation="edge 3: none -> skip_connect" if parent is not None else "",
    )
    wire = pb.Work.FromString(codec.encode_work(lease).SerializeToString())
    assert wire.HasField("parent_seq") == (parent is not None)
    assert codec.decode_work(wire, Lease) == lease
    worker_side = codec.decode_work(wire, WorkLease)
    assert worker_side.item().genome == lease.genome and worker_side.token == "t0k"


def test_no_work_and_worker_info_round_trip() -> None:
    assert codec.decode_no_work(codec.encode_no_work(NoWork(True, 2.5, "done")), NoWorkNow) == NoWorkNow(True, 2.5, "done")
    info = WorkerInfo("host-1-abc", "host", "table")
    assert codec.decode_worker(codec.encode_worker(info), WorkerInfo) == info


@pytest.mark.parametrize(
    "metrics",
    [
        Metrics(accuracy=0.9),
        Metrics(accuracy=0.5, latency_ms=0.0, params=0, mult_adds=12345678901, train_seconds=3.5, compile_seconds=1.0,
                fits_on_chip=False),
    ],
)
def test_metrics_keep_absent_optionals_absent(metrics: Metrics) -> None:
    wire = pb.Metrics.FromString(codec.encode_metrics(metrics).SerializeToString())
    decoded = codec.decode_metrics(wire, Metrics)
    for name in ("accuracy", "latency_ms", "params", "mult_adds", "train_seconds", "compile_seconds", "fits_on_chip"):
        assert getattr(decoded, name) == getattr(metrics, name), name


def test_individual_round_trips_with_and_without_outcome() -> None:
    fresh = Individual(1, "e1", 0, {"space": "nb201"}, "abcd", None, "", "leased", 1, lease_owner="w", lease_deadline=5.0)
    done = Individual(
        2, "e1", 1, {"space": "nb201"}, "ef01", 0, "m", "completed", 1, fitness=0.9, accuracy=0.9, train_seconds=1.5,
        completed_at=9.0, completion_rank=0, in_population=True,
    )
    for ind in (fresh, done):
        wire = pb.Individual.FromString(codec.encode_individual(ind).SerializeToString())
        assert codec.decode_individual(wire, Individual) == ind


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [("genome_json", "{not json", "not valid JSON"), ("genome_json", "[1, 2]", "must be a JSON object"),
     ("genome_json", "", "is required"), ("training_json", "3", "must be a JSON object")],
)
def test_malformed_json_fields_are_wire_errors(field: str, text: str, message: str) -> None:
    work = pb.Work(genome_json='{"space": "nb201"}')
    setattr(work, field, text)
    with pytest.raises(codec.WireError, match=message):
        codec.decode_work(work, WorkLease)


def test_nan_metrics_and_nameless_specs_are_wire_errors() -> None:
    with pytest.raises(codec.WireError, match="NaN"):
        codec.decode_metrics(pb.Metrics(accuracy=math.nan), Metrics)
    with pytest.raises(codec.WireError, match="name"):
        codec.decode_spec(pb.ExperimentSpec(space="nb201"), ExperimentSpec)
    with pytest.raises(codec.WireError, match="worker_id"):
        codec.decode_worker(pb.WorkerInfo(), WorkerInfo)
