"""The servicer over the real service on the in-memory store, called with a fake gRPC context (no network):
requests decode, use cases run, answers encode, and every domain error becomes its status code.

The real service over ``MemoryStore`` replaces the hand-written fake service this module once held: the
checks it imitated (tokens, deadlines, duplicates, the cap at C, requeues) are the service's own here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import grpc
import pytest

import spaces
from db.memory import MemoryStore
from db.repository import StoreTx, StoreUnavailable
from orchestrator.service import OrchestratorService, training_seed
from orchestrator.servicer import MAX_DETAILS, OrchestratorServicer
from protos import codec
from protos.amoeba.v1 import orchestrator_pb2 as pb
from tests.builders import Clock, spec

pytestmark = pytest.mark.service

WORKER = pb.WorkerInfo(worker_id="w-1", host="node-1", evaluator="table")
OTHER = pb.WorkerInfo(worker_id="w-2", host="node-2", evaluator="table")
TIMEOUT = 30.0  # builders.config's lease_timeout_s


class Aborted(Exception):
    """What ``context.abort`` raises (grpc raises an exception there too, so the handler ends)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    """The part of ``grpc.ServicerContext`` the servicer uses."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(code, details)


class Harness:
    """A servicer over ``OrchestratorService(MemoryStore())`` with a clock that moves only when told."""

    def __init__(self, store: Any = None) -> None:
        self.clock = Clock(1_800_000_000.0, step=0.0)
        self.store = store if store is not None else MemoryStore()
        self.service = OrchestratorService(self.store, clock=self.clock)
        self.database: list[bool] = []
        self.servicer = OrchestratorServicer(self.service, on_database=self.database.append)

    def call(self, method: str, request: Any) -> Any:
        """The response of a call that must succeed."""
        context = FakeContext()
        response = getattr(self.servicer, method)(request, context)
        assert context.code is None
        return response

    def fails(self, method: str, request: Any) -> tuple[grpc.StatusCode, str]:
        """The status code and details of a call that must be refused."""
        with pytest.raises(Aborted) as info:
            getattr(self.servicer, method)(request, FakeContext())
        return info.value.code, info.value.details

    def create(self, name: str = "exp", **changes: Any) -> pb.Experiment:
        msg = codec.encode_spec(spec(name, **changes))
        return self.call("CreateExperiment", pb.CreateExperimentRequest(spec=msg)).experiment

    def lease(self, worker: pb.WorkerInfo = WORKER, experiment: str | None = "exp") -> pb.LeaseWorkResponse:
        request = pb.LeaseWorkRequest(worker=worker)
        if experiment is not None:
            request.experiment = experiment
        return self.call("LeaseWork", request)

    def work(self, worker: pb.WorkerInfo = WORKER, experiment: str | None = "exp") -> pb.Work:
        reply = self.lease(worker, experiment)
        assert reply.WhichOneof("result") == "work", reply
        return reply.work

    def report(self, work: pb.Work, accuracy: float = 0.5, worker: pb.WorkerInfo = WORKER, lease_next: bool = False,
               **metrics: Any) -> pb.ReportResultResponse:
        return self.call("ReportResult", pb.ReportResultRequest(
            individual_id=work.individual_id, token=work.token, worker_id=worker.worker_id,
            metrics=pb.Metrics(accuracy=accuracy, **metrics), lease_next=lease_next))

    def individuals(self, experiment: str = "exp", **kw: Any) -> list[pb.Individual]:
        return list(self.call("ListIndividuals", pb.ListIndividualsRequest(experiment=experiment, **kw)).individuals)

    def snapshot(self) -> Any:
        """Everything the store holds (a refused call must change none of it)."""
        with self.store.transaction() as tx:
            exps = tx.experiments()
            return (exps, [tx.individuals(e.id, -1, 10_000) for e in exps], [tx.events(e.id, 0, 100_000) for e in exps],
                    tx.workers())


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.store.close()


def test_a_whole_experiment_through_the_servicer(h: Harness) -> None:
    created = h.create(evaluations=6, seed=3)
    assert (created.spec.name, created.state, created.spec.evaluations, created.proposals) == ("exp", "running", 6, 0)
    got = h.call("GetExperiment", pb.GetExperimentRequest(name="exp")).experiment
    assert got == created
    assert [e.spec.name for e in h.call("ListExperiments", pb.ListExperimentsRequest()).experiments] == ["exp"]

    work = h.work()
    seen = []
    while True:
        # A real proposal: an NB201 genome as stored, priced by the orchestrator, with its training seed.
        genome = spaces.parse_genome(json.loads(work.genome_json))
        assert genome.space == work.space == "nb201" and work.experiment == "exp"
        assert work.attempt == 1 and len(work.token) == 32 and work.deadline == h.clock.now + TIMEOUT
        assert work.seed == training_seed(3, work.proposal_seq)
        assert work.HasField("latency_ms") and work.latency_ms > 0 and work.HasField("fits_on_chip")
        seen.append(work.proposal_seq)
        h.clock.now += 10.0
        beat = h.call("Heartbeat", pb.HeartbeatRequest(individual_id=work.individual_id, token=work.token,
                                                       worker_id=WORKER.worker_id))
        assert beat.deadline == h.clock.now + TIMEOUT > work.deadline
        nxt = h.report(work, 0.5 + 0.01 * len(seen), lease_next=True, train_seconds=1.0)
        if nxt.WhichOneof("next") != "work":
            assert nxt.WhichOneof("next") == "no_work" and nxt.no_work.done
            assert nxt.no_work.message == "experiment exp is done"
            break
        work = nxt.work
    assert seen == list(range(6))
    got = h.call("GetExperiment", pb.GetExperimentRequest(name="exp")).experiment
    assert (got.state, got.completed, got.proposals, got.failed) == ("done", 6, 6, 0)
    status = json.loads(h.call("GetStatus", pb.GetStatusRequest(experiment="exp")).status_json)
    assert (status["experiment"], status["completed"], status["state"], status["target"]) == ("exp", 6, "done", 6)
    assert status == json.loads(codec.dumps(h.service.status("exp")))
    done = h.lease()
    assert done.WhichOneof("result") == "no_work" and done.no_work.done


def test_a_report_without_lease_next_answers_nothing_more(h: Harness) -> None:
    h.create(evaluations=3)
    work = h.work()
    reply = h.report(work, 0.7, latency_ms=2.5, params=1234)
    assert reply.WhichOneof("next") is None
    (ind,) = h.individuals(state="completed")
    assert (ind.id, ind.accuracy, ind.latency_ms, ind.params, ind.fitness) == (work.individual_id, 0.7, 2.5, 1234, 0.7)
    # A report without a latency keeps the one priced at proposal.
    second = h.work()
    h.report(second, 0.6)
    (_, priced) = h.individuals(state="completed")
    assert priced.latency_ms == pytest.approx(second.latency_ms)


def test_create_refuses_duplicates_and_bad_specs(h: Harness) -> None:
    h.create()
    before = h.snapshot()
    code, details = h.fails("CreateExperiment", pb.CreateExperimentRequest(spec=codec.encode_spec(spec("exp"))))
    assert code == grpc.StatusCode.ALREADY_EXISTS and details == "experiment 'exp' exists already"
    zero = codec.encode_spec(spec("zero"))
    zero.population_size = 0
    code, details = h.fails("CreateExperiment", pb.CreateExperimentRequest(spec=zero))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "population_size must be between 1" in details
    bad_json = codec.encode_spec(spec("json"))
    bad_json.training_json = "{oops"
    code, details = h.fails("CreateExperiment", pb.CreateExperimentRequest(spec=bad_json))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("training_json is not valid JSON")
    other = codec.encode_spec(spec("space"))
    other.space = "resnet"
    code, details = h.fails("CreateExperiment", pb.CreateExperimentRequest(spec=other))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "unknown search space 'resnet'; expected one of edgetpu, lse, nasnet, nb201")
    code, details = h.fails("CreateExperiment", pb.CreateExperimentRequest(spec=pb.ExperimentSpec(space="nb201")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "needs a name" in details
    code, details = h.fails("GetExperiment", pb.GetExperimentRequest(name="nope"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no experiment named 'nope'")
    assert h.snapshot() == before


def test_the_lease_holder_checks_refuse_and_change_nothing(h: Harness) -> None:
    h.create(evaluations=5, max_attempts=3)
    held = h.work()
    finished = h.work(OTHER)
    h.report(finished, 0.8, OTHER)
    late = h.work(OTHER)
    before = h.snapshot()

    def report(work: pb.Work, token: str | None = None, ind: int | None = None, **metrics: Any) -> pb.ReportResultRequest:
        return pb.ReportResultRequest(individual_id=work.individual_id if ind is None else ind,
                                      token=work.token if token is None else token, worker_id=WORKER.worker_id,
                                      metrics=pb.Metrics(**(metrics or {"accuracy": 0.5})))

    cases: list[tuple[str, Any, grpc.StatusCode, str]] = [
        ("ReportResult", report(held, token="f" * 32), grpc.StatusCode.FAILED_PRECONDITION, "no longer yours"),
        ("ReportResult", report(held, token=""), grpc.StatusCode.INVALID_ARGUMENT, "lease token is required"),
        ("ReportResult", report(held, ind=10_000), grpc.StatusCode.NOT_FOUND, "no individual 10000"),
        ("ReportResult", report(finished), grpc.StatusCode.ALREADY_EXISTS, "completed already"),
        ("ReportResult", report(held, accuracy=1.5), grpc.StatusCode.INVALID_ARGUMENT, "accuracy must be between"),
        ("ReportResult", report(held, accuracy=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
        ("ReportResult", report(held, accuracy=0.5, latency_ms=-1.0), grpc.StatusCode.INVALID_ARGUMENT, "latency_ms"),
        ("ReportResult", pb.ReportResultRequest(individual_id=held.individual_id, token=held.token,
                                                worker_id=WORKER.worker_id),
         grpc.StatusCode.INVALID_ARGUMENT, "metrics are required"),
        ("ReportFailure", pb.ReportFailureRequest(individual_id=finished.individual_id, token=finished.token,
                                                  worker_id=OTHER.worker_id, reason="late"),
         grpc.StatusCode.ALREADY_EXISTS, "completed already"),
        ("ReportFailure", pb.ReportFailureRequest(individual_id=held.individual_id, token=held.token,
                                                  worker_id=WORKER.worker_id, reason="  "),
         grpc.StatusCode.INVALID_ARGUMENT, "a failure needs a reason"),
        ("Heartbeat", pb.HeartbeatRequest(individual_id=held.individual_id, token="x", worker_id=WORKER.worker_id),
         grpc.StatusCode.FAILED_PRECONDITION, "no longer yours"),
        ("ReleaseLease", pb.ReleaseLeaseRequest(individual_id=held.individual_id, token="x", worker_id="w-1"),
         grpc.StatusCode.FAILED_PRECONDITION, "no longer yours"),
        ("LeaseWork", pb.LeaseWorkRequest(worker=pb.WorkerInfo(), experiment="exp"), grpc.StatusCode.INVALID_ARGUMENT,
         "worker.worker_id is required"),
        ("LeaseWork", pb.LeaseWorkRequest(worker=WORKER, experiment="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
    ]
    for method, request, code, text in cases:
        got_code, details = h.fails(method, request)
        assert got_code == code and text in details, (method, text, got_code, details)
        assert h.snapshot() == before, text
    # Past the deadline, before anything swept it: the late report is refused and the lease stays as it was.
    h.clock.now += TIMEOUT + 0.5
    code, details = h.fails("ReportResult", report(late))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details.endswith("expired")
    code, details = h.fails("Heartbeat", pb.HeartbeatRequest(individual_id=late.individual_id, token=late.token,
                                                            worker_id=OTHER.worker_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details.endswith("expired")
    assert h.snapshot() == before
    # The next lease call requeues the expired leases: they come back with attempt + 1 and a new token.
    again = h.work(OTHER)
    assert (again.individual_id, again.attempt) == (held.individual_id, 2) and again.token != held.token
    assert again.genome_json == held.genome_json and again.seed == held.seed


def test_work_is_capped_at_c_and_a_failure_frees_a_slot(h: Harness) -> None:
    h.create(evaluations=3)
    a, b, c = h.work(), h.work(OTHER), h.work()
    wait = h.lease(OTHER)
    assert wait.WhichOneof("result") == "no_work" and not wait.no_work.done and wait.no_work.retry_after_s > 0
    h.call("ReportFailure", pb.ReportFailureRequest(individual_id=a.individual_id, token=a.token,
                                                    worker_id=WORKER.worker_id, reason="NaN loss"))
    d = h.work(OTHER)  # the failure does not count towards C: one more proposal
    assert d.proposal_seq == 3
    failed = h.individuals(state="failed")
    assert [(i.id, i.failure_reason, i.in_population) for i in failed] == [(a.individual_id, "NaN loss", False)]
    for work in (b, c, d):
        h.report(work)
    got = h.call("GetExperiment", pb.GetExperimentRequest(name="exp")).experiment
    assert (got.state, got.completed, got.failed, got.proposals) == ("done", 3, 1, 4)


def test_a_retryable_failure_requeues_until_the_last_attempt(h: Harness) -> None:
    h.create(max_attempts=2)
    first = h.work()
    h.call("ReportFailure", pb.ReportFailureRequest(individual_id=first.individual_id, token=first.token,
                                                    worker_id=WORKER.worker_id, reason="preempted", retryable=True))
    again = h.work(OTHER)
    assert (again.individual_id, again.attempt) == (first.individual_id, 2)
    h.call("ReportFailure", pb.ReportFailureRequest(individual_id=again.individual_id, token=again.token,
                                                    worker_id=OTHER.worker_id, reason="preempted", retryable=True))
    (ind,) = h.individuals(state="failed")
    assert (ind.id, ind.attempts, ind.failure_reason) == (first.individual_id, 2, "preempted")


def test_release_requeues_without_using_an_attempt(h: Harness) -> None:
    h.create()
    work = h.work()
    h.call("ReleaseLease", pb.ReleaseLeaseRequest(individual_id=work.individual_id, token=work.token,
                                                  worker_id=WORKER.worker_id))
    (queued,) = h.individuals(state="queued")
    assert queued.id == work.individual_id and not queued.HasField("lease_owner")
    back = h.work(OTHER)
    assert (back.individual_id, back.proposal_seq, back.attempt) == (work.individual_id, 0, 1)
    assert back.token != work.token
    code, _ = h.fails("Heartbeat", pb.HeartbeatRequest(individual_id=work.individual_id, token=work.token,
                                                       worker_id=WORKER.worker_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    (leased,) = h.individuals(state="leased")
    assert leased.lease_owner == OTHER.worker_id


def test_a_lease_for_any_experiment_skips_finished_ones(h: Harness) -> None:
    h.create("one", evaluations=1, seed=1)
    h.create("two", evaluations=2, seed=2)
    seen = []
    reply = h.lease(experiment=None)
    while reply.WhichOneof("result") == "work":
        seen.append((reply.work.experiment, reply.work.proposal_seq))
        nxt = h.report(reply.work, lease_next=True)
        reply = pb.LeaseWorkResponse(work=nxt.work) if nxt.WhichOneof("next") == "work" else h.lease(experiment=None)
    assert seen == [("one", 0), ("two", 0), ("two", 1)]
    assert reply.no_work.done and reply.no_work.message == "no running experiment"


def test_pause_stops_new_work_and_resume_restarts_it(h: Harness) -> None:
    h.create(evaluations=4)
    out = h.work()
    paused = h.call("PauseExperiment", pb.PauseExperimentRequest(name="exp", reason="maintenance")).experiment
    assert paused.state == "paused"
    wait = h.lease()
    assert wait.WhichOneof("result") == "no_work" and not wait.no_work.done
    assert wait.no_work.message == "experiment exp is paused"
    # Work already out finishes and reports as usual.
    assert h.report(out).WhichOneof("next") is None
    status = json.loads(h.call("GetStatus", pb.GetStatusRequest(experiment="exp")).status_json)
    assert (status["state"], status["paused_reason"], status["completed"]) == ("paused", "maintenance", 1)
    code, details = h.fails("PauseExperiment", pb.PauseExperimentRequest(name="exp"))
    assert (code, details) == (grpc.StatusCode.FAILED_PRECONDITION, "experiment exp is paused, not running")
    resumed = h.call("ResumeExperiment", pb.ResumeExperimentRequest(name="exp")).experiment
    assert resumed.state == "running"
    assert h.work().proposal_seq == 1
    code, details = h.fails("ResumeExperiment", pb.ResumeExperimentRequest(name="exp"))
    assert (code, details) == (grpc.StatusCode.FAILED_PRECONDITION, "experiment exp is running, not paused")
    code, _ = h.fails("PauseExperiment", pb.PauseExperimentRequest(name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_listing_pages_filters_and_refuses_bad_requests(h: Harness) -> None:
    h.create(evaluations=7)
    works = [h.work() for _ in range(7)]
    for w in works[:4]:
        h.report(w)
    pages, token = [], ""
    while True:
        reply = h.call("ListIndividuals", pb.ListIndividualsRequest(experiment="exp", page_size=3, page_token=token))
        pages.append([i.proposal_seq for i in reply.individuals])
        token = reply.next_page_token
        if not token:
            break
    assert pages == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(h.individuals()) == 7  # page_size 0: the default page
    completed = h.individuals(state="completed")
    assert [i.proposal_seq for i in completed] == [0, 1, 2, 3]
    assert all(i.HasField("accuracy") and i.HasField("completion_rank") for i in completed)
    assert [i.proposal_seq for i in h.individuals(state="leased")] == [4, 5, 6]
    assert all(not i.HasField("accuracy") for i in h.individuals(state="leased"))
    for request, code, text in [
        (pb.ListIndividualsRequest(experiment="exp", page_size=-1), grpc.StatusCode.INVALID_ARGUMENT,
         "page_size must be >= 0"),
        (pb.ListIndividualsRequest(experiment="exp", page_token="zz"), grpc.StatusCode.INVALID_ARGUMENT,
         "malformed page token"),
        (pb.ListIndividualsRequest(experiment="exp", state="lost"), grpc.StatusCode.INVALID_ARGUMENT, "state must be"),
        (pb.ListIndividualsRequest(experiment="nope"), grpc.StatusCode.NOT_FOUND, "no experiment named 'nope'"),
    ]:
        got, details = h.fails("ListIndividuals", request)
        assert got == code and text in details, (text, details)
    code, details = h.fails("GetStatus", pb.GetStatusRequest(experiment="nope"))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no experiment named 'nope'")


class FlakyStore:
    """A MemoryStore whose next transactions raise ``error`` (a database outage, or a bug)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.error: BaseException | None = None

    @property
    def dialect(self) -> str:
        return "memory"

    def transaction(self) -> AbstractContextManager[StoreTx]:
        if self.error is not None:
            raise self.error
        return self.inner.transaction()

    def close(self) -> None:
        self.inner.close()


def test_outages_are_unavailable_and_reported_and_bugs_are_internal() -> None:
    store = FlakyStore()
    h = Harness(store)
    h.create()
    assert h.database == [True]
    store.error = StoreUnavailable("database is locked " + "x" * 3000)
    code, details = h.fails("GetExperiment", pb.GetExperimentRequest(name="exp"))
    assert code == grpc.StatusCode.UNAVAILABLE and details.startswith("database is locked")
    # Details travel in a trailer: a huge message is cut so the status itself arrives.
    assert len(details) == MAX_DETAILS + 3 and details.endswith("...")
    assert h.database == [True, False]
    store.error = RuntimeError("disk on fire")
    code, details = h.fails("ListExperiments", pb.ListExperimentsRequest())
    assert code == grpc.StatusCode.INTERNAL and "RuntimeError" in details and "disk on fire" not in details
    store.error = None
    assert [e.spec.name for e in h.call("ListExperiments", pb.ListExperimentsRequest()).experiments] == ["exp"]
    assert h.database[-1] is True
    # A domain error that is not an outage says the database answered.
    h.fails("GetExperiment", pb.GetExperimentRequest(name="nope"))
    assert h.database[-1] is True


def test_every_rpc_has_a_handler_here() -> None:
    """The servicer implements every method of the service (none falls back to UNIMPLEMENTED)."""
    service = pb.DESCRIPTOR.services_by_name["Orchestrator"]
    handlers: dict[str, Callable[..., Any]] = {m.name: getattr(OrchestratorServicer, m.name) for m in service.methods}
    import protos.amoeba.v1.orchestrator_pb2_grpc as pb_grpc

    for name, handler in handlers.items():
        assert handler is not getattr(pb_grpc.OrchestratorServicer, name), name
