"""``amoeba experiment create/list/show``: manage experiments through a server (--server) or a database (--db).

JSON schemas (stable): ``create`` and each entry of ``list`` print an experiment object
``{"name", "id", "state", "space", "algorithm", "population_size", "sample_size", "evaluations", "seed",
"proposals", "completed", "failed", "rejected", "created_at", "spec"}`` (``spec``: the full config);
``list`` prints ``{"experiments": [...]}``; ``show`` prints ``{"experiment": {...}, "status": {...}}``
where ``status`` is the service's status snapshot (see the README's status schema).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from cli.errors import UserError
from cli.remote import TlsCaOpt, TlsCertOpt, TlsKeyOpt, TlsNameOpt, TokenOpt, make_client, remote
from db.repository import SchemaOutOfDate
from domain.errors import AmoebaError

T = TypeVar("T")

experiment_app = typer.Typer(help="Create, list and inspect experiments.", no_args_is_help=True)

DEFAULT_DB = "sqlite:///amoeba.db"
ServerOpt = Annotated[str | None, typer.Option("--server", help="talk to the orchestrator at HOST:PORT")]
DbOpt = Annotated[str | None, typer.Option("--db", help=f"use this database directly (default {DEFAULT_DB})")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the JSON document only")]


def register(app: typer.Typer) -> None:
    app.add_typer(experiment_app, name="experiment")


class _Backend:
    """The orchestrator's use cases against a server (the gRPC client) or a database (the service
    in-process): both answer the same calls with the same values and errors."""

    def __init__(self, server: str | None, db_url: str | None, client_args: tuple[Any, ...]) -> None:
        if server and db_url:
            raise UserError("give either --server or --db, not both")
        self.server = server
        if server:
            self.target: Any = make_client(server, *client_args)
            self.where = f"the server at {server}"
        else:
            from orchestrator.service import open_service

            url = db_url or DEFAULT_DB
            try:
                self.target = open_service(url)
            except SchemaOutOfDate:
                raise
            except (AmoebaError, ValueError) as exc:
                raise UserError(f"cannot open database {url}: {exc}") from None
            self.where = url

    def call(self, fn: Callable[[Any], T]) -> T:
        if self.server:
            return remote(self.server, lambda: fn(self.target))
        return fn(self.target)

    def close(self) -> None:
        if self.server:
            self.target.close()
        else:
            self.target.store.close()


def experiment_json(exp: Any) -> dict[str, Any]:
    from orchestrator.config import spec_to_dict

    s = exp.spec
    return {
        "name": s.name, "id": exp.id, "state": exp.state, "space": s.space, "algorithm": s.algorithm,
        "population_size": s.population_size, "sample_size": s.sample_size, "evaluations": s.evaluations,
        "seed": s.seed, "proposals": exp.proposals, "completed": exp.completed, "failed": exp.failed,
        "rejected": exp.rejected, "created_at": exp.created_at, "paused_reason": exp.paused_reason,
        "spec": spec_to_dict(s),
    }


def _line(exp: Any) -> str:
    s = exp.spec
    line = (f"{s.name}: {exp.state}, {s.space} {s.algorithm} P={s.population_size} S={s.sample_size}, "
            f"{exp.completed}/{s.evaluations} completed, {exp.failed} failed, {exp.rejected} rejected, "
            f"{exp.proposals} proposals")
    return line + (f" ({exp.paused_reason})" if exp.paused_reason else "")


@experiment_app.command("create")
def create(
    config: Annotated[str, typer.Option("--config", help="experiment config file (YAML or JSON)")],
    name: Annotated[str | None, typer.Option(help="override the config's name")] = None,
    server: ServerOpt = None,
    db_url: DbOpt = None,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an experiment from a config file (search space, P, S, C, seed, mutation, objective, training)."""
    from orchestrator.config import load_spec_file

    spec = load_spec_file(config, name=name)
    backend = _Backend(server, db_url, (token, tls_ca, tls_cert, tls_key, tls_server_name))
    try:
        exp = backend.call(lambda t: t.create_experiment(spec))
    finally:
        backend.close()
    if as_json:
        print(json.dumps(experiment_json(exp), sort_keys=True))
    else:
        print(f"created {_line(exp)}")


@experiment_app.command("list")
def list_(
    server: ServerOpt = None,
    db_url: DbOpt = None,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List every experiment with its progress."""
    backend = _Backend(server, db_url, (token, tls_ca, tls_cert, tls_key, tls_server_name))
    try:
        exps = backend.call(lambda t: t.list_experiments())
    finally:
        backend.close()
    if as_json:
        print(json.dumps({"experiments": [experiment_json(e) for e in exps]}, sort_keys=True))
    elif not exps:
        print("no experiments")
    else:
        for e in exps:
            print(_line(e))


@experiment_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="experiment name")],
    server: ServerOpt = None,
    db_url: DbOpt = None,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one experiment: its config, progress and status snapshot."""
    backend = _Backend(server, db_url, (token, tls_ca, tls_cert, tls_key, tls_server_name))
    try:
        exp = backend.call(lambda t: t.get_experiment(name))
        status = dict(backend.call(lambda t: t.status(name)))
    finally:
        backend.close()
    if as_json:
        print(json.dumps({"experiment": experiment_json(exp), "status": status}, sort_keys=True))
        return
    print(_line(exp))
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(exp.created_at))
    print(f"  created {created}, seed {exp.spec.seed}, lease timeout {exp.spec.lease_timeout_s:g}s, "
          f"max attempts {exp.spec.max_attempts}")
    best = status.get("best")
    if isinstance(best, dict):
        print(f"  best: fitness {best.get('fitness')} (proposal {best.get('proposal_seq')}) {best.get('summary', '')}")
    print(f"  training: {json.dumps(exp.spec.training, sort_keys=True)}")


@experiment_app.command("pause")
def pause(
    name: Annotated[str, typer.Argument(help="experiment name")],
    reason: Annotated[str, typer.Option(help="why (shown in status)")] = "",
    server: ServerOpt = None,
    db_url: DbOpt = None,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop leasing new work of a running experiment (leases out now finish as usual)."""
    backend = _Backend(server, db_url, (token, tls_ca, tls_cert, tls_key, tls_server_name))
    try:
        exp = backend.call(lambda t: t.pause(name, reason))
    finally:
        backend.close()
    print(json.dumps(experiment_json(exp), sort_keys=True) if as_json else f"paused {_line(exp)}")


@experiment_app.command("resume")
def resume(
    name: Annotated[str, typer.Argument(help="experiment name")],
    server: ServerOpt = None,
    db_url: DbOpt = None,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Lease work of a paused experiment again (after fixing what made the circuit breaker pause it)."""
    backend = _Backend(server, db_url, (token, tls_ca, tls_cert, tls_key, tls_server_name))
    try:
        exp = backend.call(lambda t: t.resume(name))
    finally:
        backend.close()
    print(json.dumps(experiment_json(exp), sort_keys=True) if as_json else f"resumed {_line(exp)}")


@experiment_app.command("fork")
def fork(
    source: Annotated[str, typer.Option("--from", help="the experiment to fork")],
    at: Annotated[int, typer.Option("--at", help="event number whose population the fork starts from")],
    name: Annotated[str | None, typer.Option(help="the fork's name (default: SOURCE-atSEQ)")] = None,
    population: Annotated[int | None, typer.Option(help="P of the fork (default: the source's); keeps the P youngest members")] = None,
    sample: Annotated[int | None, typer.Option(help="S of the fork (default: the source's)")] = None,
    evaluations: Annotated[int | None, typer.Option(help="new evaluations to run (default: what the source had left at SEQ)")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the fork's proposals (default: the source's)")] = None,
    db_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue an experiment from its state at event SEQ as a new experiment (e.g. with another P or S).

    With --json it prints an object with name, id, source, at, seeded (the source's proposal numbers of the members copied), target and spec.
    """
    from db import open_store
    from orchestrator.fork import ForkRequest, fork_experiment

    for flag, value in (("--population", population), ("--sample", sample), ("--evaluations", evaluations)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    url = db_url or DEFAULT_DB
    try:
        store = open_store(url)
    except SchemaOutOfDate:
        raise
    except (AmoebaError, ValueError) as exc:
        raise UserError(f"cannot open database {url}: {exc}") from None
    try:
        result = fork_experiment(store, ForkRequest(source, at, name, population, sample, evaluations, seed))
    finally:
        store.close()
    if as_json:
        print(json.dumps(result.to_json(), sort_keys=True))
        return
    s = result.spec
    print(f"forked {result.source} at event {result.at} into {result.name}: {len(result.seeded)} members seeded, "
          f"P={s.population_size} S={s.sample_size} seed {s.seed}, target {s.evaluations} completions "
          f"({s.evaluations - len(result.seeded)} new); run it with `amoeba up --db {url} --name {result.name}`")
