"""``amoeba server``: the orchestrator on a port, over a migrated database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer

from cli.artifacts import open_artifacts
from cli.errors import UserError
from cli.remote import blank_to_none

DEFAULT_DB = "sqlite:///amoeba.db"


def register(app: typer.Typer) -> None:
    app.command("server")(server)


def server(
    db_url: Annotated[str, typer.Option("--db", envvar="AMOEBA_DB", help="database URL: sqlite:///FILE (or a path) or postgresql://...")] = DEFAULT_DB,
    port: Annotated[int, typer.Option(help="port to listen on (0: any free port, printed at start)")] = 50051,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 for every interface)")] = "127.0.0.1",
    token: Annotated[str | None, typer.Option(envvar="AMOEBA_TOKEN", help="require 'authorization: Bearer TOKEN' on every call but health checks")] = None,
    tls_cert: Annotated[str | None, typer.Option(envvar="AMOEBA_TLS_CERT", help="server certificate (PEM); with --tls-key enables TLS")] = None,
    tls_key: Annotated[str | None, typer.Option(envvar="AMOEBA_TLS_KEY", help="server private key (PEM)")] = None,
    tls_client_ca: Annotated[str | None, typer.Option(envvar="AMOEBA_TLS_CLIENT_CA", help="CA (PEM) that client certificates must chain to (mTLS)")] = None,
    max_message_mb: Annotated[float, typer.Option(help="largest request or response, in MiB")] = 4.0,
    threads: Annotated[int, typer.Option(help="threads running service calls (database transactions)")] = 4,
    grace: Annotated[float, typer.Option(help="seconds in-flight calls get to finish after SIGTERM")] = 10.0,
    sweep_interval: Annotated[float, typer.Option(help="seconds between sweeps that requeue expired leases with no worker calling in (0: off)")] = 5.0,
    artifacts: Annotated[str | None, typer.Option(envvar="AMOEBA_ARTIFACTS", help="artifact store for trained weights: a folder, s3://bucket/prefix or gs://... (handed to workers with each lease; default: none kept)")] = None,
    mode: Annotated[str, typer.Option(help="network side: sync (thread-pool server, default: measured faster) or aio (asyncio)")] = "sync",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON line when listening (address, port, tls, auth)")] = False,
) -> None:
    """Serve the orchestrator until SIGTERM or Ctrl-C (then stop gracefully and exit 0)."""
    from db import SchemaOutOfDate, StoreError
    from orchestrator.server import ServerConfig, ServerConfigError, TLSConfig, serve
    from orchestrator.service import open_service

    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0..65535, got {port}")
    if threads < 1 or max_message_mb <= 0 or grace < 0:
        raise UserError("--threads must be >= 1, --max-message-mb > 0 and --grace >= 0")
    if not 0 <= sweep_interval <= 86400:
        raise UserError(f"--sweep-interval must be between 0 and 86400 seconds, got {sweep_interval}")
    if mode not in ("aio", "sync"):
        raise UserError(f"--mode must be aio or sync, got {mode!r}")
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise UserError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # the schema check is not news
    try:
        tls = TLSConfig.from_files(blank_to_none(tls_cert), blank_to_none(tls_key), blank_to_none(tls_client_ca))
    except ServerConfigError as exc:
        raise UserError(str(exc)) from None
    store = open_artifacts(blank_to_none(artifacts))
    try:
        service = open_service(db_url, artifacts=store)
    except SchemaOutOfDate as exc:
        raise UserError(str(exc)) from None
    except (StoreError, ValueError) as exc:
        raise UserError(f"cannot open database {db_url}: {exc}") from None
    config = ServerConfig(
        host=host, port=port, token=blank_to_none(token), tls=tls, max_message_bytes=int(max_message_mb * 1024 * 1024),
        handler_threads=threads, grace_s=grace, mode="aio" if mode == "aio" else "sync", sweep_interval_s=sweep_interval,
    )

    def started(running: object) -> None:
        from orchestrator.server import RunningServer

        assert isinstance(running, RunningServer)
        info = {"address": f"{host}:{running.port}", "port": running.port, "tls": tls is not None,
                "mtls": tls is not None and tls.client_ca is not None, "auth": config.token is not None}
        if as_json:
            print(json.dumps(info, sort_keys=True), flush=True)
        else:
            flags = ", ".join(f for f, on in (("TLS", info["tls"]), ("mTLS", info["mtls"]), ("token", info["auth"])) if on)
            print(f"amoeba server listening on {info['address']}" + (f" ({flags})" if flags else ""), file=sys.stderr, flush=True)

    try:
        serve(service, config, on_started=started)
    except ServerConfigError as exc:
        raise UserError(str(exc)) from None
    finally:
        service.store.close()
