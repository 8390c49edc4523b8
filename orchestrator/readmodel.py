"""The status document, time travel and export records straight from a database, opened read-only.

``status`` is the service's own snapshot (the same document a server answers) over a read-only store,
with the top K asked for and, on ``pareto``, the accuracy/latency front of the latest FRONT_WINDOW
completions (all of them in smaller experiments) added to the population and the top. ``status_at`` folds the event log up to one event
into the same document. Everything here reads; nothing writes.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from db.readmodel import ReadOnlyDatabase
from db.repository import EventRecord, ExperimentRecord
from evolution import EvolutionConfig, Member, observe
from genome import get_space
from orchestrator.config import spec_from_json
from orchestrator.domain import ExperimentSpec, InvalidArgument, NotFound
from orchestrator.replay import ReplayReport, verify_experiment
from orchestrator.service import RATE_WINDOW, OrchestratorServiceImpl, to_individual
from ui.derive import pareto_flags

DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
PAGE = 10_000
#: Completions whose accuracy/latency front ``status`` computes: all of them up to this many, else the latest.
FRONT_WINDOW = 10_000


def _summary(space: Any, genome_json: str) -> str:
    return str(space.from_json(json.loads(genome_json)).summary())


class ReadModel:
    """Queries over one database opened read-only (``close`` when done)."""

    def __init__(self, url: str) -> None:
        self.db = ReadOnlyDatabase(url)
        self.service = OrchestratorServiceImpl(self.db.store)

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

    # --- the status document ---------------------------------------------------------------------------

    def status(self, name: str | None = None, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
        """The status document now (ui.schema, version 1)."""
        _check_top(top_k)
        exp = self.experiment(name)
        doc = self.service.status(exp.name)
        space = get_space(self.spec(exp).space)
        if top_k != len(doc["top"]) or top_k > DEFAULT_TOP_K:
            with self.db.store.transaction() as tx:
                rows = tx.top(exp.id, top_k)
            last = exp.completed - 1
            doc["top"] = [
                {"proposal_seq": r.proposal_seq, "fingerprint": r.fingerprint, "fitness": r.fitness,
                 "accuracy": r.accuracy, "latency_ms": r.latency_ms, "summary": _summary(space, r.genome_json),
                 "parent_seq": r.parent_seq, "age": last - (r.completion_rank or 0)}
                for r in rows
            ]
        # The whole front while that is cheap; past FRONT_WINDOW completions, the front of the latest ones.
        doc["pareto"] = _with_front(doc["pareto"], self.db.front_points(exp.id, max(0, exp.completed - FRONT_WINDOW)))
        return doc

    def status_at(self, seq: int, name: str | None = None, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
        """The status document as of event ``seq``: the event log folded up to it (time travel)."""
        _check_top(top_k)
        exp = self.experiment(name)
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= exp.event_seq:
            raise InvalidArgument(f"--at must be an event number between 1 and {exp.event_seq}, got {seq}")
        spec = self.spec(exp)
        fold = LogFold(spec, exp.created_at)
        fold.apply(self.db.events_upto(exp.id, seq))
        wanted = [s for s, *_ in fold.top(top_k)]
        if fold.best is not None:
            wanted.append(fold.best[0])
        genomes = self.db.genomes(exp.id, wanted)
        with self.db.store.transaction() as tx:
            hosts = {w.worker_id: w.host for w in tx.workers(exp.id)}
        return fold.document(exp.name, spec, genomes, hosts, top_k)

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

    def verify(self, name: str | None = None) -> ReplayReport:
        return verify_experiment(self.db.store, self.experiment(name).name)


def _check_top(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(f"--top must be between 0 and {MAX_TOP_K}, got {top_k!r}")


def _with_front(points: list[dict[str, Any]], candidates: list[Any]) -> list[dict[str, Any]]:
    """The given points plus the non-dominated ones among ``candidates``, with on_front over the union."""
    flags = pareto_flags([(c.accuracy, c.latency_ms) for c in candidates])
    merged = {p["fingerprint"] + f":{p['accuracy']}:{p['latency_ms']}": dict(p) for p in points}
    for c, on in zip(candidates, flags, strict=True):
        if on:
            merged.setdefault(f"{c.fingerprint}:{c.accuracy}:{c.latency_ms}", {
                "fingerprint": c.fingerprint, "accuracy": c.accuracy, "latency_ms": c.latency_ms, "on_front": True})
    out = list(merged.values())
    for p, on in zip(out, pareto_flags([(p["accuracy"], p["latency_ms"]) for p in out]), strict=True):
        p["on_front"] = on
    return out


@dataclass(slots=True)
class _WorkerSeen:
    last_seen: float
    lease: int | None = None
    evaluations: int = 0


@dataclass(slots=True)
class LogFold:
    """The status of an experiment rebuilt from its event log, one event at a time.

    The population follows ``evolution.observe`` (the same rule the service applies), fed with the
    logged objectives; a member's genome is not needed for that, so none is parsed.
    """

    spec: ExperimentSpec
    created_at: float
    config: EvolutionConfig = field(init=False)
    state: str = "running"
    at: float = 0.0
    seq: int = 0
    proposals: int = 0
    completed: int = 0
    failed: int = 0
    rejected: int = 0
    population: tuple[Member, ...] = ()
    ranks: dict[int, int] = field(default_factory=dict)
    done: list[tuple[int, float, float | None, float | None, float]] = field(default_factory=list)
    best: tuple[int, float, float | None, float | None] | None = None
    best_so_far: list[list[float]] = field(default_factory=list)
    holder: dict[int, str] = field(default_factory=dict)
    open_state: dict[int, str] = field(default_factory=dict)
    workers: dict[str, _WorkerSeen] = field(default_factory=dict)
    fingerprints: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = EvolutionConfig(self.spec.population_size, self.spec.sample_size, self.spec.algorithm,
                                      self.spec.seed)

    def apply(self, events: Iterable[EventRecord]) -> None:
        for e in events:
            self._one(e)

    def _touch(self, worker: str, at: float) -> _WorkerSeen:
        seen = self.workers.setdefault(worker, _WorkerSeen(at))
        seen.last_seen = max(seen.last_seen, at)
        return seen

    def _complete(self, seq: int, data: Mapping[str, Any], at: float) -> None:
        fitness = float(data["fitness"])
        accuracy, latency = data.get("accuracy"), data.get("latency_ms")
        self.ranks[seq] = self.completed
        self.completed += 1
        self.done.append((seq, fitness, accuracy, latency, at))
        # Only the fitness matters to observe(); the genome slot is never read there.
        member = Member(seq, None, fitness, accuracy or 0.0, latency)  # type: ignore[arg-type]
        self.population, _ = observe(self.config, self.population, member)
        if self.best is None or fitness > self.best[1]:
            self.best = (seq, fitness, accuracy, latency)
            self.best_so_far.append([at - self.created_at, fitness])

    def _one(self, e: EventRecord) -> None:
        self.seq, self.at = e.seq, e.at
        data = json.loads(e.data_json) if e.data_json else {}
        seq = e.proposal_seq
        if seq is None:
            if e.kind == "experiment_done":
                self.state = "done"
            return
        if e.kind in ("proposed", "seeded"):
            self.proposals += 1
            self.fingerprints[seq] = str(data.get("fingerprint", ""))
        if e.kind == "seeded":
            self._complete(seq, data, e.at)
            return
        if e.kind == "leased":
            worker = str(data.get("worker", ""))
            self.holder[seq] = worker
            self.open_state[seq] = "leased"
            self._touch(worker, e.at).lease = seq
            return
        if e.kind not in ("expired", "released", "requeued", "completed", "failed", "rejected"):
            return
        holder = self.holder.pop(seq, None)
        if holder is not None:
            # An expiry is the server noticing silence: it is not a sign of life from the worker.
            seen = self.workers[holder] if e.kind == "expired" else self._touch(holder, e.at)
            if seen.lease == seq:
                seen.lease = None
            if e.kind in ("completed", "rejected"):
                seen.evaluations += 1
        if e.kind in ("released", "requeued") or (e.kind == "expired" and data.get("requeued", True)):
            self.open_state[seq] = "queued"
        else:
            self.open_state.pop(seq, None)
        if e.kind == "completed":
            self._complete(seq, data, e.at)
        elif e.kind == "failed":
            self.failed += 1
        elif e.kind == "rejected":
            self.rejected += 1

    def top(self, k: int) -> list[tuple[int, float, float | None, float | None, float]]:
        return sorted(self.done, key=lambda d: (-d[1], d[0]))[:k]

    def document(self, name: str, spec: ExperimentSpec, genomes: Mapping[int, tuple[str, int | None, str]],
                 hosts: Mapping[str, str], top_k: int) -> dict[str, Any]:
        space = get_space(spec.space)
        last = self.completed - 1
        fits = sorted(m.fitness for m in self.population)
        rate = 0.0
        if len(self.done) >= 2:
            window = self.done[-(RATE_WINDOW + 1):]
            span = window[-1][4] - window[0][4]
            rate = (len(window) - 1) / span * 3600.0 if span > 0 else 0.0
        remaining = max(0, spec.evaluations - self.completed)

        def entry(seq: int) -> tuple[str, int | None, str]:
            return genomes.get(seq, ("", None, ""))

        best = None
        if self.best is not None:
            g, _parent, fp = entry(self.best[0])
            best = {"fingerprint": fp, "accuracy": self.best[2], "latency_ms": self.best[3], "fitness": self.best[1],
                    "proposal_seq": self.best[0], "summary": _summary(space, g) if g else ""}
        with_latency = [d for d in self.done if d[2] is not None and d[3] is not None]
        flags = pareto_flags([(float(d[2]), float(d[3])) for d in with_latency])  # type: ignore[arg-type]
        members = {m.seq for m in self.population}
        pareto_seqs = {d[0] for d, on in zip(with_latency, flags, strict=True) if on} | members
        pareto_seqs |= {d[0] for d in self.top(top_k)}
        shown = [(d, on) for d, on in zip(with_latency, flags, strict=True) if d[0] in pareto_seqs]
        return {
            "schema": 1,
            "experiment": name,
            "state": self.state,
            "space": spec.space,
            "algorithm": spec.algorithm,
            "completed": self.completed,
            "failed": self.failed,
            "rejected": self.rejected,
            "target": spec.evaluations,
            "proposals": self.proposals,
            "queued": sum(1 for s in self.open_state.values() if s == "queued"),
            "leased": sum(1 for s in self.open_state.values() if s == "leased"),
            "evaluations_per_hour": rate,
            "eta_seconds": remaining / rate * 3600.0 if rate > 0 else None,
            "best": best,
            "population": {
                "size": len(self.population),
                "target_size": spec.population_size,
                "best": fits[-1] if fits else None,
                "median": statistics.median(fits) if fits else None,
                "worst": fits[0] if fits else None,
                "ages": [last - self.ranks[m.seq] for m in self.population],
            },
            "best_so_far": self.best_so_far,
            "pareto": [{"fingerprint": self.fingerprints.get(d[0], ""), "accuracy": d[2], "latency_ms": d[3], "on_front": on}
                       for d, on in shown],
            "top": [
                {"proposal_seq": s, "fingerprint": entry(s)[2], "fitness": f, "accuracy": a, "latency_ms": lat,
                 "summary": _summary(space, entry(s)[0]) if entry(s)[0] else "", "parent_seq": entry(s)[1],
                 "age": last - self.ranks[s]}
                for s, f, a, lat, _ in self.top(top_k)
            ],
            "workers": [
                {"worker_id": w, "host": hosts.get(w, ""), "alive": self.at - seen.last_seen <= spec.lease_timeout_s,
                 "lease": seen.lease, "last_heartbeat": seen.last_seen, "evaluations": seen.evaluations}
                for w, seen in sorted(self.workers.items())
            ],
            "generated_at": self.at,
            "seq": self.seq,
        }
