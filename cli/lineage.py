"""``amoeba lineage``: the chain of ancestors of one individual, from its seed (or random genome) to it, with
the mutation at each step and each one's accuracy; read-only, from the database alone.

``--json`` document (stable): ``{"experiment": str, "seq": int, "generations": int, "chain": [{"generation",
"proposal_seq", "parent_seq", "mutation", "state", "accuracy", "fitness", "fingerprint", "summary",
"genome"}]}``, ``chain`` oldest first (generation 0 has no parent; ``generations`` = len(chain) - 1),
``genome`` the stored genome's JSON object, ``summary`` its one-line form.

Also ``departures``: when the members a killing algorithm (``pairwise``) removed left the population, for
the exports' population timeline.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.errors import UserError
from cli.status import domain_call, open_readmodel
from domain.errors import AmoebaError

#: Longer chains than this are corrupt data (a parent loop the database let through), not a lineage.
MAX_GENERATIONS = 1_000_000


def register(app: typer.Typer) -> None:
    app.command("lineage")(lineage)


def _record(tx: Any, exp_id: int, seq: int) -> Any:
    rows = tx.individuals(exp_id, seq - 1, 1)
    return rows[0] if rows and rows[0].proposal_seq == seq else None


def ancestry(store: Any, exp: Any, seq: int) -> list[Any]:
    """The stored individuals from ``seq`` back to the first with no parent, oldest first; UserError when
    ``seq`` (or an ancestor) is missing."""
    chain: list[Any] = []
    seen: set[int] = set()
    current: int | None = seq
    with store.transaction() as tx:
        while current is not None:
            if current in seen or len(chain) >= MAX_GENERATIONS:
                raise UserError(f"experiment {exp.name!r}: the parents of individual {seq} loop at {current}")
            seen.add(current)
            row = _record(tx, exp.id, current)
            if row is None:
                if current == seq:
                    raise UserError(f"experiment {exp.name!r} has no individual {seq} "
                                    f"(its proposals are 0..{max(exp.proposals - 1, 0)})")
                raise UserError(f"experiment {exp.name!r}: individual {seq}'s ancestor {current} is missing")
            chain.append(row)
            current = row.parent_seq
    chain.reverse()
    return chain


def _summary(space: Any, genome_json: str) -> tuple[Any, str]:
    try:
        data = json.loads(genome_json)
        return data, space.parse(data).summary()
    except (AmoebaError, ValueError) as exc:  # a stored genome that no longer parses is shown, not fatal
        return None, f"(unreadable genome: {str(exc)[:60]})"


def lineage(
    db_url: Annotated[str, typer.Option("--db", help="database URL or SQLite file (a copy works; opened read-only)")],
    seq: Annotated[int, typer.Option("--seq", help="the individual's proposal number K")],
    experiment: Annotated[str | None, typer.Option(help="experiment name (default: the newest running one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (see the module's schema)")] = False,
) -> None:
    """The ancestors of individual K, from its seed to it, with the mutation at each step and each accuracy."""
    import spaces

    if seq < 0:
        raise UserError(f"--seq must be a proposal number (0 or more), got {seq}")
    model = open_readmodel(db_url)
    try:
        exp = domain_call(lambda: model.experiment(experiment))
        space = spaces.get(model.spec(exp).space)
        rows = ancestry(model.db.store, exp, seq)
    finally:
        model.close()
    chain = []
    for generation, r in enumerate(rows):
        genome, summary = _summary(space, r.genome_json)
        chain.append({"generation": generation, "proposal_seq": r.proposal_seq, "parent_seq": r.parent_seq,
                      "mutation": r.mutation, "state": r.state, "accuracy": r.accuracy, "fitness": r.fitness,
                      "fingerprint": r.fingerprint, "summary": summary, "genome": genome})
    doc = {"experiment": exp.name, "seq": seq, "generations": len(chain) - 1, "chain": chain}
    if as_json:
        print(json.dumps(doc, sort_keys=True))
        return
    print(f"{exp.name}: individual {seq} and its {len(chain) - 1} ancestors, oldest first")
    print(f"{'gen':>4} {'seq':>7} {'accuracy':>9}  {'mutation':<44} network")
    for c in chain:
        acc = "" if c["accuracy"] is None else f"{c['accuracy']:.4f}"
        if c["state"] != "completed":
            acc = c["state"]
        mutation = str(c["mutation"] or "")
        mutation = mutation if len(mutation) <= 44 else mutation[:41] + "..."
        print(f"{c['generation']:>4} {c['proposal_seq']:>7} {acc:>9}  {mutation:<44} {c['summary']}")


def departures(store: Any, name: str) -> dict[int, int]:
    """Proposal number of each member a proposal killed -> the members ranked (completions, and stopped
    children that joined) before that kill, from the event log (``ui.derive.population_timeline``)."""
    from domain import events as ev
    from orchestrator.replay import read_log

    with store.transaction() as tx:
        exp = tx.experiment(name)
    if exp is None:
        return {}
    ranked = 0
    out: dict[int, int] = {}
    for e in read_log(store, exp.id):
        if e.kind == ev.EventKind.COMPLETED:
            ranked += 1
        elif e.kind == ev.EventKind.STOPPED:
            payload = ev.decode(e.kind, e.data_json)
            if isinstance(payload, ev.Stopped) and payload.joined and payload.fitness is not None:
                ranked += 1
        elif e.kind == ev.EventKind.KILLED and e.proposal_seq is not None:
            out.setdefault(int(e.proposal_seq), ranked)
    return out
