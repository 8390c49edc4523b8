"""Hostile input over the wire: every RPC fuzzed (hypothesis) with malformed, oversized and out-of-range messages
and raw bytes; invalid configs, absurd metrics, unknown ids, reused and forged tokens; SQL injection through every
string field. Each is answered with a precise status (never INTERNAL or UNKNOWN), the server stays up, and a
refused call leaves every table exactly as it was."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import builders
import grpc
import pytest
from chaos_helpers import check_invariants, create_experiment, experiment_config, snapshot
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.engine import make_engine
from orchestrator.server import RunningServer, ServerConfig, start
from orchestrator.service import open_service
from protos import codec
from protos.amoeba.v1 import orchestrator_pb2 as pb
from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc

pytestmark = pytest.mark.grpc

#: Statuses that say precisely what is wrong with a request; INTERNAL, UNKNOWN or UNAVAILABLE never do.
PRECISE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE}
READ_ONLY = {"GetExperiment", "ListExperiments", "GetStatus", "ListIndividuals"}
LIMIT = 64 * 1024
INJECTIONS = [
    "'; DROP TABLE experiments; --", "x' OR '1'='1", "Robert'); DROP TABLE workers;--", "1; DELETE FROM individuals",
    "\" OR 1=1 --", "%(name)s", ":name", "?", "\\'", "' UNION SELECT token FROM individuals --",
    "$$; TRUNCATE events; $$", "/* */ --", "ünïcödé ✓ 🧬",
]


@dataclass
class Target:
    """A server with an experiment in mid-run: one completed individual and one lease held."""

    url: str
    engine: Any
    running: RunningServer
    channel: grpc.Channel
    stub: pb_grpc.OrchestratorStub
    held: pb.Work
    done: pb.Work

    def call(self, method: str, request: Any) -> tuple[grpc.StatusCode, str]:
        """Call; assert a precise answer, and that a refused (or read-only) call changed no table."""
        before = snapshot(self.engine)
        code, details = grpc.StatusCode.OK, ""
        try:
            getattr(self.stub, method)(request, timeout=20)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        assert code == grpc.StatusCode.OK or code in PRECISE, f"{method}: {code} {details[:300]}"
        if code != grpc.StatusCode.OK or method in READ_ONLY:
            assert snapshot(self.engine) == before, f"{method} answered {code} but changed the database"
        return code, details

    def raw(self, method: str, data: bytes) -> grpc.StatusCode:
        before = snapshot(self.engine)
        call = self.channel.unary_unary(f"/amoeba.v1.Orchestrator/{method}", request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
        code = grpc.StatusCode.OK
        try:
            call(data, timeout=20)
        except grpc.RpcError as exc:
            code = exc.code()
            assert code in PRECISE, f"{method} on raw bytes {data[:40]!r}: {code} {exc.details()}"
        if code != grpc.StatusCode.OK or method in READ_ONLY:
            assert snapshot(self.engine) == before
        return code

    def still_up(self) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        assert [e.spec.name for e in self.stub.ListExperiments(pb.ListExperimentsRequest(), timeout=10).experiments]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    create_experiment(url, experiment_config("exp", evaluations=6, population=2, sample=1, lease_timeout_s=600))
    service = open_service(url)
    # Both network sides: the asyncio server on SQLite, the thread-pool server on PostgreSQL.
    mode = "aio" if request.param == "sqlite" else "sync"
    running = start(service, ServerConfig(port=0, grace_s=1.0, max_message_bytes=LIMIT, mode=mode))
    channel = grpc.insecure_channel(running.address)
    stub = pb_grpc.OrchestratorStub(channel)
    worker = pb.WorkerInfo(worker_id="honest", host="h", evaluator="table")
    done = stub.LeaseWork(pb.LeaseWorkRequest(worker=worker, experiment="exp"), timeout=10).work
    stub.ReportResult(pb.ReportResultRequest(individual_id=done.individual_id, token=done.token, worker_id="honest",
                                             metrics=pb.Metrics(accuracy=0.5)), timeout=10)
    held = stub.LeaseWork(pb.LeaseWorkRequest(worker=worker, experiment="exp"), timeout=10).work
    engine = make_engine(url)
    try:
        yield Target(url, engine, running, channel, stub, held, done)
    finally:
        channel.close()
        running.stop(1.0)
        service.store.close()
        engine.dispose()


# --- strategies ---------------------------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(INJECTIONS),
    st.sampled_from(["", "\x00", "exp", "exp\x00", " exp", "EXP", "a" * 201, "honest"]),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.text(min_size=190, max_size=400),
    st.just("z" * (LIMIT + 1000)),  # over the message limit
)
int64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, -(2**63)]))
int32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2, 100_001]))
doubles = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 0.5, 1.0]))
json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=12)
json_texts = st.one_of(
    texts,
    st.sampled_from(['{"a": NaN}', '{"a": Infinity}', "[" * 5000, '{"x": 1e999}', "{}", "[]", "null", "1",
                     '{"type": "edge_op"}', '{"kind": "mnas", "target_ms": -1}', '{"table": {"sleep_s": -1}}',
                     '{"a":' * 3000 + "1" + "}" * 3000]),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
)


def message(cls: Any, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Messages of ``cls`` with each field drawn or left unset (None)."""
    return st.fixed_dictionaries({k: st.none() | s for k, s in fields.items()}).map(
        lambda d: cls(**{k: v for k, v in d.items() if v is not None}))


def requests(t: Target) -> dict[str, st.SearchStrategy[Any]]:
    ids = st.one_of(int64, st.sampled_from([t.held.individual_id, t.done.individual_id]))
    tokens = st.one_of(texts, st.sampled_from([t.held.token, t.done.token, t.held.token.upper(), t.held.token[:-1]]))
    worker = message(pb.WorkerInfo, worker_id=texts, host=texts, evaluator=texts)
    metrics = message(pb.Metrics, accuracy=doubles, latency_ms=doubles, params=int64, mult_adds=int64,
                      train_seconds=doubles, compile_seconds=doubles, fits_on_chip=st.booleans())
    spec = message(pb.ExperimentSpec, name=texts, space=st.one_of(texts, st.sampled_from(["nb201", "nasnet"])),
                   population_size=int32, sample_size=int32, evaluations=int32, seed=int64,
                   algorithm=st.one_of(texts, st.sampled_from(["aging", "random"])), mutation_json=json_texts,
                   objective_json=json_texts, training_json=json_texts, lease_timeout_s=doubles, max_attempts=int32)
    return {
        "CreateExperiment": message(pb.CreateExperimentRequest, spec=spec),
        "GetExperiment": message(pb.GetExperimentRequest, name=texts),
        "ListExperiments": st.just(pb.ListExperimentsRequest()),
        "LeaseWork": message(pb.LeaseWorkRequest, worker=worker, experiment=texts),
        "Heartbeat": message(pb.HeartbeatRequest, individual_id=ids, token=tokens, worker_id=texts),
        "ReportResult": message(pb.ReportResultRequest, individual_id=ids, token=tokens, worker_id=texts,
                                metrics=metrics, lease_next=st.booleans()),
        "ReportFailure": message(pb.ReportFailureRequest, individual_id=ids, token=tokens, worker_id=texts,
                                 reason=texts, retryable=st.booleans()),
        "ReleaseLease": message(pb.ReleaseLeaseRequest, individual_id=ids, token=tokens, worker_id=texts),
        "GetStatus": message(pb.GetStatusRequest, experiment=texts),
        "ListIndividuals": message(pb.ListIndividualsRequest, experiment=st.one_of(texts, st.just("exp")),
                                   page_size=int32, page_token=st.one_of(texts, int64.map(str)), state=texts),
    }


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


def _fuzz(target: Target, method: str, strategy: st.SearchStrategy[Any], examples: int,
          seen: dict[str, set[grpc.StatusCode]]) -> None:
    @fuzz_settings(examples)
    @given(strategy)
    def messages(request: Any) -> None:
        code, _ = target.call(method, request)
        seen.setdefault(method, set()).add(code)

    @fuzz_settings(max(4, examples // 3))
    @given(st.binary(max_size=200))
    def raw_bytes(data: bytes) -> None:
        target.raw(method, data)

    messages()
    raw_bytes()


def test_every_rpc_fuzzed_gets_a_precise_answer_and_refusals_change_nothing(target: Target) -> None:
    examples = 20 if "sqlite" in target.url else 8
    seen: dict[str, set[grpc.StatusCode]] = {}
    for method, strategy in requests(target).items():
        _fuzz(target, method, strategy, examples, seen)
    target.still_up()
    # The fuzzing reached the checks, not just the transport: each mutating RPC was refused for content.
    for method in ("CreateExperiment", "LeaseWork", "Heartbeat", "ReportResult", "ReportFailure", "ReleaseLease"):
        assert seen[method] & {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                               grpc.StatusCode.FAILED_PRECONDITION}, (method, seen[method])
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in set().union(*seen.values())


def _spec(**changes: Any) -> pb.ExperimentSpec:
    msg = codec.encode_spec(builders.spec("new", population=3, sample=2, evaluations=5))
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_invalid_configs_absurd_metrics_unknown_ids_and_bad_tokens(target: Target) -> None:
    bad_specs = [
        _spec(space="resnet"), _spec(population_size=0), _spec(sample_size=-3), _spec(evaluations=0),
        _spec(population_size=2**31 - 1), _spec(seed=-1), _spec(algorithm="genetic"), _spec(max_attempts=0),
        _spec(lease_timeout_s=math.nan), _spec(lease_timeout_s=-1), _spec(lease_timeout_s=math.inf),
        _spec(name="has space"), _spec(name="x" * 201), _spec(name="'; DROP TABLE experiments; --"),
        _spec(mutation_json='{"type": "no_such_mutation"}'), _spec(mutation_json='{"type": "hidden_state"}'),
        _spec(mutation_json="[" * 5000), _spec(objective_json='{"kind": "mnas", "target_ms": -5}'),
        _spec(objective_json='{"kind": "speed"}'), _spec(training_json='{"lr": NaN}'),
        _spec(training_json='{"lr": 1e999}'), _spec(training_json="[1, 2]"), _spec(training_json="{oops"),
        _spec(mutation_json='{"type": "choice", "options": [{"weight": NaN, "op": {"type": "edge_op"}}]}'),
    ]
    for spec in bad_specs:
        code, details = target.call("CreateExperiment", pb.CreateExperimentRequest(spec=spec))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (spec, code, details)

    held, done = target.held, target.done

    def report(ind: int = held.individual_id, token: str = held.token, **metrics: Any) -> pb.ReportResultRequest:
        return pb.ReportResultRequest(individual_id=ind, token=token, worker_id="honest",
                                      metrics=pb.Metrics(**({"accuracy": 0.5} | metrics)))

    for metrics in ({"accuracy": math.nan}, {"accuracy": -0.1}, {"accuracy": 1.01}, {"accuracy": math.inf},
                    {"latency_ms": -1.0}, {"latency_ms": math.nan}, {"latency_ms": 1e300}, {"params": -1},
                    {"params": 2**62}, {"mult_adds": -5}, {"train_seconds": -1.0}, {"train_seconds": 1e12},
                    {"compile_seconds": math.inf}):
        assert target.call("ReportResult", report(**metrics))[0] == grpc.StatusCode.INVALID_ARGUMENT, metrics
    no_metrics = pb.ReportResultRequest(individual_id=held.individual_id, token=held.token, worker_id="honest")
    assert target.call("ReportResult", no_metrics)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # Unknown experiments and individuals.
    for method, request in (("GetExperiment", pb.GetExperimentRequest(name="nope")),
                            ("GetStatus", pb.GetStatusRequest(experiment="nope")),
                            ("ListIndividuals", pb.ListIndividualsRequest(experiment="nope")),
                            ("LeaseWork", pb.LeaseWorkRequest(worker=pb.WorkerInfo(worker_id="w"), experiment="nope")),
                            ("ReportResult", report(ind=10**9)),
                            ("Heartbeat", pb.HeartbeatRequest(individual_id=-7, token=held.token, worker_id="w")),
                            ("ReleaseLease", pb.ReleaseLeaseRequest(individual_id=10**12, token="t", worker_id="w"))):
        assert target.call(method, request)[0] == grpc.StatusCode.NOT_FOUND, method
    # Forged tokens, a token of another lease, a reused token of a finished individual.
    for token in ("forged", held.token.upper(), held.token + "0", done.token, " " + held.token):
        assert target.call("ReportResult", report(token=token))[0] == grpc.StatusCode.FAILED_PRECONDITION, token
        hb = pb.HeartbeatRequest(individual_id=held.individual_id, token=token, worker_id="honest")
        assert target.call("Heartbeat", hb)[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert target.call("ReportResult", report(token=""))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert target.call("ReportResult", report(ind=done.individual_id, token=done.token))[0] == (
        grpc.StatusCode.ALREADY_EXISTS)
    # The held lease still works after all that, exactly once.
    assert target.call("ReportResult", report())[0] == grpc.StatusCode.OK
    assert target.call("ReportResult", report())[0] == grpc.StatusCode.ALREADY_EXISTS
    target.still_up()


def test_sql_injection_through_every_string_field_is_stored_as_data(target: Target) -> None:
    stub = target.stub
    training = {"note": INJECTIONS[0], "table": {"sleep_s": 0}, INJECTIONS[2]: INJECTIONS[1]}
    # Experiment names are restricted, so an injection there is refused; lookups find nothing.
    assert target.call("CreateExperiment", pb.CreateExperimentRequest(spec=_spec(name=INJECTIONS[0])))[0] == (
        grpc.StatusCode.INVALID_ARGUMENT)
    for name in INJECTIONS:
        assert target.call("GetExperiment", pb.GetExperimentRequest(name=name))[0] == grpc.StatusCode.NOT_FOUND
        assert target.call("GetStatus", pb.GetStatusRequest(experiment=name))[0] == grpc.StatusCode.NOT_FOUND
    stub.CreateExperiment(pb.CreateExperimentRequest(spec=_spec(name="inj", training_json=json.dumps(training))),
                          timeout=10)
    stored = stub.GetExperiment(pb.GetExperimentRequest(name="inj"), timeout=10).experiment
    assert json.loads(stored.spec.training_json) == training
    leases: dict[str, pb.Work] = {}
    for k, text in enumerate(INJECTIONS):
        worker = pb.WorkerInfo(worker_id=text, host=text, evaluator=text[:64])
        reply = stub.LeaseWork(pb.LeaseWorkRequest(worker=worker, experiment="inj"), timeout=10)
        if reply.WhichOneof("result") != "work":
            break
        leases[text] = reply.work
        assert json.loads(reply.work.training_json) == training
        if k % 2:
            stub.ReportFailure(pb.ReportFailureRequest(individual_id=reply.work.individual_id, token=reply.work.token,
                                                       worker_id=text, reason=f"reason: {text}"), timeout=10)
    assert len(leases) >= 5  # C = 5 outstanding at most; each failure frees a slot
    # Read back verbatim: lease owners, failure reasons, worker hosts.
    rows = stub.ListIndividuals(pb.ListIndividualsRequest(experiment="inj"), timeout=10).individuals
    by_id = {r.id: r for r in rows}
    for text, work in leases.items():
        row = by_id[work.individual_id]
        assert row.lease_owner == text
        if row.state == "failed":
            assert row.failure_reason == f"reason: {text}"
    doc = json.loads(stub.GetStatus(pb.GetStatusRequest(experiment="inj"), timeout=10).status_json)
    hosts = {w["worker_id"]: w["host"] for w in doc["workers"]}
    assert set(leases) <= set(hosts) <= set(INJECTIONS) and all(k == v for k, v in hosts.items())
    # Every table is intact: the other experiment still runs to its end and replays.
    tables = snapshot(target.engine)
    assert {len(tables[t]) > 0 for t in tables} == {True}
    work = target.held
    while True:
        nxt = stub.ReportResult(pb.ReportResultRequest(individual_id=work.individual_id, token=work.token,
                                                       worker_id="finisher", metrics=pb.Metrics(accuracy=0.7),
                                                       lease_next=True), timeout=10)
        if nxt.WhichOneof("next") != "work":
            assert nxt.no_work.done
            break
        work = nxt.work
    check_invariants(target.url, "exp")
