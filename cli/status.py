"""``amoeba status``: the status view of an experiment, from a server (--server) or a database (--db, read-only).

``--json`` prints the status document of ``ui/schema.py`` (schema version 1; README "amoeba status").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from cli.errors import UserError
from cli.remote import TlsCaOpt, TlsCertOpt, TlsKeyOpt, TlsNameOpt, TokenOpt, make_client, remote
from domain.errors import AmoebaError


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def open_readmodel(db_url: str, follow: bool = False) -> Any:
    """A read-only ReadModel over ``db_url``, with every way of failing as one user-facing line."""
    from db import SchemaOutOfDate
    from orchestrator.readmodel import ReadModel

    try:
        return ReadModel(db_url, follow=follow)
    except (SchemaOutOfDate, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    except (AmoebaError, ValueError) as exc:
        raise UserError(f"cannot open database {db_url}: {exc}") from None


def domain_call(call: Callable[[], Any]) -> Any:
    """Run a read-model call (its errors are AmoebaErrors: one line at the command's boundary)."""
    return call()


def _server_fetch(client: Any, server: str, experiment: str | None, top: int) -> Callable[[], dict[str, Any]]:
    name = experiment
    if not name:
        exps = remote(server, client.list_experiments)
        if not exps:
            raise UserError(f"the server at {server} has no experiment")
        running = [e for e in exps if e.state == "running"]
        name = (running or exps)[-1].spec.name

    def fetch() -> dict[str, Any]:
        doc = dict(remote(server, lambda: client.status(name)))
        # The server answers its own top 10; fewer is a cut, more needs --db.
        doc["top"] = list(doc.get("top", []))[:top]
        return doc

    return fetch


def status(
    server: Annotated[str | None, typer.Option("--server", help="orchestrator HOST:PORT")] = None,
    db_url: Annotated[str | None, typer.Option("--db", help="database URL or SQLite file, opened read-only")] = None,
    experiment: Annotated[str | None, typer.Option(help="experiment name (default: the newest running one)")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="refresh in place until the experiment completes (Ctrl-C to leave)")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes with --watch")] = 2.0,
    top: Annotated[int, typer.Option(help="how many of the best individuals to list (a server lists at most 10)")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print the status document (JSON, schema version 1)")] = False,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
) -> None:
    """Show an experiment's progress, population, best-so-far, accuracy/latency front, top individuals and workers."""
    from rich.console import Console

    from ui.status import render_status

    if (server is None) == (db_url is None):
        raise UserError("give either --server HOST:PORT or --db URL")
    if not 0 <= top <= 1000:
        raise UserError(f"--top must be between 0 and 1000, got {top}")
    if interval <= 0:
        raise UserError("--interval must be > 0")
    if watch and as_json:
        raise UserError("--watch redraws a terminal view; use --json without --watch (and poll) for scripts")
    closer: Callable[[], None]
    if server is not None:
        client = make_client(server, token, tls_ca, tls_cert, tls_key, tls_server_name, rpc_timeout_s=10.0)
        closer = client.close
        try:
            fetch = _server_fetch(client, server, experiment, top)
        except BaseException:
            closer()
            raise
    else:
        assert db_url is not None
        model = open_readmodel(db_url, follow=watch)
        closer = model.close
        name = experiment or domain_call(lambda: model.experiment(None).name)

        def fetch() -> dict[str, Any]:
            doc: dict[str, Any] = domain_call(lambda: model.status(name, top))
            return doc

    try:
        if watch:
            from ui.live import follow

            try:
                follow(fetch, interval=interval)
            except KeyboardInterrupt:
                return
            return
        doc = fetch()
        if as_json:
            print(json.dumps(doc, sort_keys=True))
        else:
            Console().print(render_status(doc))
    finally:
        closer()
