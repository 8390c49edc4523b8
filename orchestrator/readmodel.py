"""The status document, time travel and export records straight from a database, opened read-only.

``status`` is the service's own snapshot (the same document a server answers) over a read-only store,
with the top K asked for and, on ``pareto``, the accuracy/latency front of the latest FRONT_WINDOW
completions (all of them in smaller experiments) added to the population and the top. ``status_at`` folds the event log up to one event
into the same document. Everything here reads; nothing writes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from db.readmodel import ReadOnlyDatabase
from db.repository import ExperimentRecord
from domain import ExperimentSpec, InvalidArgument, NotFound
from domain.status import StatusSnapshot
from orchestrator.config import spec_from_json
from orchestrator.logfold import LogFold
from orchestrator.replay import ReplayReport, progress_curves, verify_experiment
from orchestrator.service import OrchestratorService, to_individual
from orchestrator.statusdoc import Entry, status_document

DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
PAGE = 10_000
#: Completions whose accuracy/latency front ``status`` computes: all of them up to this many, else the latest.
FRONT_WINDOW = 10_000


class ReadModel:
    """Queries over one database opened read-only (``close`` when done)."""

    def __init__(self, url: str, *, follow: bool = False) -> None:
        self.db = ReadOnlyDatabase(url, follow=follow)
        self.service = OrchestratorService(self.db.store)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ReadModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- experiments -----------------------------------------------------------------------------------

    def experiments(self) -> list[ExperimentRecord]:
        with self.db.store.transaction() as tx:
            return tx.experiments()

    def experiment(self, name: str | None) -> ExperimentRecord:
        """The named experiment; without a name, the only one, else the most recent running, else the newest."""
        if name:
            with self.db.store.transaction() as tx:
                exp = tx.experiment(name)
            if exp is None:
                raise NotFound(f"no experiment named {name!r}")
            return exp
        exps = self.experiments()
        if not exps:
            raise NotFound("the database holds no experiment")
        running = [e for e in exps if e.state == "running"]
        return (running or exps)[-1]

    def spec(self, exp: ExperimentRecord) -> ExperimentSpec:
        return spec_from_json(exp.config_json)

    def artifacts(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every individual that had weights stored, by proposal: seq, uri, sha256, bytes, state (kept or
        deleted by retention), fingerprint and accuracy."""
        exp = self.experiment(name)
        with self.db.store.transaction() as tx:
            rows = tx.artifacts(exp.id, None)
        return [{"seq": r.proposal_seq, "uri": r.artifact_uri, "sha256": r.artifact_sha256, "bytes": r.artifact_bytes,
                 "state": r.artifact_state, "fingerprint": r.fingerprint, "accuracy": r.accuracy,
                 "in_population": r.in_population} for r in rows]

    # --- the status document ---------------------------------------------------------------------------

    def status(self, name: str | None = None, top_k: int = DEFAULT_TOP_K) -> StatusSnapshot:
        """The status document now (``domain.status``, version 1), with the top ``top_k`` and the front of
        every completion (past FRONT_WINDOW completions, of the latest ones) in ``pareto``."""
        _check_top(top_k)
        exp = self.experiment(name)
        front = [Entry(p.proposal_seq, p.fingerprint, 0.0, p.accuracy, p.latency_ms, 0)
                 for p in self.db.front_points(exp.id, max(0, exp.completed - FRONT_WINDOW))]
        with self.db.store.transaction() as tx:
            facts = self.service.status_facts(tx, exp, self.service.now(), top_k, front)
        return status_document(facts)

    def status_at(self, seq: int, name: str | None = None, top_k: int = DEFAULT_TOP_K) -> StatusSnapshot:
        """The status document as of event ``seq``: the event log folded up to it (time travel)."""
        _check_top(top_k)
        exp = self.experiment(name)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= exp.event_seq:
            raise InvalidArgument(f"--at must be an event number between 1 and {exp.event_seq}, got {seq}")
        fold = LogFold(self.spec(exp), exp.created_at, lambda seqs: self.db.genomes(exp.id, seqs))
        fold.apply(self.db.events_upto(exp.id, seq))
        with self.db.store.transaction() as tx:
            hosts = {w.worker_id: w.host for w in tx.workers(exp.id)}
        return status_document(fold.facts(exp.name, hosts, top_k))

    # --- export and verification -----------------------------------------------------------------------

    def records(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every individual as a plain mapping with ``orchestrator.domain.Individual``'s fields, by proposal."""
        exp = self.experiment(name)
        out: list[dict[str, Any]] = []
        after = -1
        while True:
            with self.db.store.transaction() as tx:
                rows = tx.individuals(exp.id, after, PAGE)
            out.extend(asdict(to_individual(exp.name, r)) for r in rows)
            if len(rows) < PAGE:
                return out
            after = rows[-1].proposal_seq

    def curves(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every progress report kept (learning curves), in log order (``orchestrator.replay.progress_curves``)."""
        return progress_curves(self.db.store, self.experiment(name).name)

    def verify(self, name: str | None = None) -> ReplayReport:
        return verify_experiment(self.db.store, self.experiment(name).name)


def _check_top(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(f"--top must be between 0 and {MAX_TOP_K}, got {top_k!r}")
