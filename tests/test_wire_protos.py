"""The wire protocol: committed generated code is current, and the codec round-trips every value."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

import spaces
from domain import Experiment, ExperimentSpec, Individual, Lease, Metrics, NoWork, WorkerInfo
from genome.base import GenomeError, canonical_json
from protos import codec, generate
from protos.amoeba.v1 import orchestrator_pb2 as pb
from worker.trial import Trial

pytestmark = pytest.mark.unit


def test_committed_generated_code_matches_a_fresh_generation() -> None:
    assert generate.check() == []


def test_check_notices_a_changed_generated_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    algorithm_options={"tournament": {"size": 3}, "weights": [0.5, 1.5]},
    mutation={"type": "edge_op"}, objective={"kind": "accuracy"}, training={"table": {"sleep_s": [0.1, 0.2]}},
    lease_timeout_s=12.5, max_attempts=4,
)
GENOME = spaces.get("nb201").sample(random.Random(3))
GENOME_JSON = canonical_json(GENOME.to_json())


def test_spec_and_experiment_round_trip_through_bytes() -> None:
    exp = Experiment(3, SPEC, "running", 1795000000.25, 12, 9, 1, 2)
    wire = pb.Experiment.FromString(codec.encode_experiment(exp).SerializeToString())
    assert json.loads(wire.spec.algorithm_options_json) == SPEC.algorithm_options
    assert codec.decode_experiment(wire) == exp


def test_a_spec_without_optional_json_fields_gets_the_defaults() -> None:
    spec = codec.decode_spec(pb.ExperimentSpec(name="e", space="nb201", population_size=2, sample_size=1,
                                               evaluations=3))
    assert (spec.algorithm, spec.algorithm_options, spec.mutation, spec.objective, spec.training) == (
        "aging", {}, {}, {"kind": "accuracy"}, {})


@pytest.mark.parametrize("parent", [None, 0, 41])
@pytest.mark.parametrize(("latency", "fits"), [(None, None), (1.25, True), (0.0, False)])
def test_lease_round_trips_and_the_worker_parses_its_genome(parent: int | None, latency: float | None,
                                                             fits: bool | None) -> None:
    lease = Lease(
        experiment="e1", individual_id=5, proposal_seq=41 if parent is None else 42, token="t0k", deadline=1795000010.5,
        attempt=2, genome_json=GENOME_JSON, space="nb201", seed=99, training={"epochs": 2},
        parent_seq=parent, mutation="edge 3: none -> skip_connect" if parent is not None else "",
        latency_ms=latency, fits_on_chip=fits,
    )
    wire = pb.Work.FromString(codec.encode_work(lease).SerializeToString())
    assert wire.HasField("parent_seq") == (parent is not None)
    assert wire.HasField("latency_ms") == (latency is not None) and wire.HasField("fits_on_chip") == (fits is not None)
    assert wire.genome_json == GENOME_JSON
    decoded = codec.decode_work(wire)
    assert decoded == lease
    trial = Trial(decoded)
    assert trial.genome == GENOME and trial.genome_json == GENOME_JSON
    assert (trial.latency_ms, trial.seed, trial.training, trial.parent_seq) == (latency, 99, {"epochs": 2}, parent)
    assert decoded.token == "t0k"


def test_the_genome_json_travels_unchanged() -> None:
    """The codec never parses or re-encodes the genome: the stored text reaches the worker byte for byte."""
    arch = GENOME.to_json()["arch"]
    text = ' {"space" : "nb201",  "arch": "' + arch + '"} '
    assert canonical_json(json.loads(text)) == GENOME_JSON and text != GENOME_JSON
    work = codec.encode_work(Lease("e", 1, 0, "t", 0.0, 1, text, "nb201", 0))
    decoded = codec.decode_work(pb.Work.FromString(work.SerializeToString()))
    assert decoded.genome_json == text
    assert Trial(decoded).genome == GENOME


def test_no_work_and_worker_info_round_trip() -> None:
    for no_work in (NoWork(True, 2.5, "done"), NoWork(False, 0.25, "every remaining individual is leased")):
        assert codec.decode_no_work(pb.NoWork.FromString(codec.encode_no_work(no_work).SerializeToString())) == no_work
    info = WorkerInfo("host-1-abc", "host", "table")
    assert codec.decode_worker(codec.encode_worker(info)) == info


@pytest.mark.parametrize(
    "metrics",
    [
        Metrics(accuracy=0.9),
        Metrics(accuracy=0.5, latency_ms=0.0, params=0, mult_adds=12345678901, train_seconds=3.5, compile_seconds=1.0,
                fits_on_chip=False),
        Metrics(accuracy=1.0, latency_ms=2.5, fits_on_chip=True),
    ],
)
def test_metrics_keep_absent_optionals_absent(metrics: Metrics) -> None:
    wire = pb.Metrics.FromString(codec.encode_metrics(metrics).SerializeToString())
    decoded = codec.decode_metrics(wire)
    for name in ("accuracy", "latency_ms", "params", "mult_adds", "train_seconds", "compile_seconds", "fits_on_chip"):
        assert getattr(decoded, name) == getattr(metrics, name), name
    assert decoded == metrics


def test_individual_round_trips_with_and_without_outcome() -> None:
    fresh = Individual(1, "e1", 0, GENOME_JSON, "abcd", None, "", "leased", 1, lease_owner="w", lease_deadline=5.0)
    done = Individual(
        2, "e1", 1, GENOME_JSON, "ef01", 0, "m", "completed", 1, fitness=0.9, accuracy=0.9, latency_ms=1.5,
        train_seconds=1.5, completed_at=9.0, completion_rank=0, in_population=True,
    )
    for ind in (fresh, done):
        wire = pb.Individual.FromString(codec.encode_individual(ind).SerializeToString())
        assert wire.genome_json == GENOME_JSON
        assert codec.decode_individual(wire) == ind


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [("genome_json", "", "genome_json is required"), ("training_json", "3", "training_json must be a JSON object"),
     ("training_json", "{not json", "training_json is not valid JSON")],
)
def test_malformed_fields_are_wire_errors(field: str, text: str, message: str) -> None:
    work = pb.Work(genome_json=GENOME_JSON)
    setattr(work, field, text)
    with pytest.raises(codec.WireError, match=message):
        codec.decode_work(work)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "genome is not valid JSON"), ("[1, 2]", "arch string")],
)
def test_a_malformed_genome_passes_the_codec_and_fails_where_it_is_parsed(text: str, message: str) -> None:
    """The codec no longer parses the genome (it travels unchanged); the worker's Trial parses it once and
    refuses it with a GenomeError (an evaluation failure, not a transport error)."""
    lease = codec.decode_work(pb.Work(genome_json=text, space="nb201"))
    assert lease.genome_json == text
    with pytest.raises(GenomeError, match=message):
        _ = Trial(lease).genome


def test_nan_metrics_and_nameless_specs_are_wire_errors() -> None:
    with pytest.raises(codec.WireError, match="NaN"):
        codec.decode_metrics(pb.Metrics(accuracy=math.nan))
    with pytest.raises(codec.WireError, match="NaN"):
        codec.decode_metrics(pb.Metrics(accuracy=0.5, latency_ms=math.nan))
    with pytest.raises(codec.WireError, match="name"):
        codec.decode_spec(pb.ExperimentSpec(space="nb201"))
    with pytest.raises(codec.WireError, match="algorithm_options_json must be a JSON object"):
        codec.decode_spec(pb.ExperimentSpec(name="e", space="nb201", algorithm_options_json="[1]"))
    with pytest.raises(codec.WireError, match="worker_id"):
        codec.decode_worker(pb.WorkerInfo())
