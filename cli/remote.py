"""Shared client options of the commands that talk to a server: address, token, TLS; gRPC errors as one line."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from cli.errors import UserError
from domain import Unauthenticated, Unavailable
from domain.errors import AmoebaError

T = TypeVar("T")

ServerOpt = Annotated[str, typer.Option("--server", envvar="AMOEBA_SERVER", help="orchestrator HOST:PORT")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="AMOEBA_TOKEN", help="shared secret sent as 'authorization: Bearer ...'")
]
TlsCaOpt = Annotated[
    str | None, typer.Option("--tls-ca", envvar="AMOEBA_TLS_CA", help="CA certificate (PEM) of the server; enables TLS")
]
TlsCertOpt = Annotated[
    str | None, typer.Option("--tls-cert", envvar="AMOEBA_TLS_CLIENT_CERT", help="client certificate (PEM) for mTLS")
]
TlsKeyOpt = Annotated[str | None, typer.Option("--tls-key", envvar="AMOEBA_TLS_CLIENT_KEY", help="client key (PEM) for mTLS")]
TlsNameOpt = Annotated[
    str | None, typer.Option("--tls-server-name", help="name to check the server certificate against (default: the host)")
]


def blank_to_none(value: str | None) -> str | None:
    # docker-compose passes unset variables as empty strings; treat them as absent.
    return value if value else None


def make_client(
    server: str,
    token: str | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_server_name: str | None = None,
    rpc_timeout_s: float = 30.0,
) -> Any:
    from protos.client import ClientTLS, OrchestratorClient

    host, _, port = server.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--server must be HOST:PORT, got {server!r}")
    tls_ca, tls_cert, tls_key = blank_to_none(tls_ca), blank_to_none(tls_cert), blank_to_none(tls_key)
    tls = None
    if tls_ca or tls_cert or tls_key:
        for path in (tls_ca, tls_cert, tls_key):
            if path and not os.path.isfile(path):
                raise UserError(f"TLS file not found: {path}")
        try:
            tls = ClientTLS.from_files(tls_ca, tls_cert, tls_key, blank_to_none(tls_server_name))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return OrchestratorClient(server, token=blank_to_none(token), tls=tls, rpc_timeout_s=rpc_timeout_s)


def remote_error_line(exc: AmoebaError, server: str) -> str:
    """One line for a failed call: what the server said, or why it could not be reached."""
    if isinstance(exc, Unavailable):
        return f"cannot reach the server at {server}: {exc}"
    if isinstance(exc, Unauthenticated):
        return f"the server at {server} refused the credentials: {exc} (set --token or AMOEBA_TOKEN)"
    code = getattr(exc, "code", None)
    return f"{exc} ({code})" if code else str(exc)


def remote(server: str, call: Callable[[], T]) -> T:
    """``call()`` against the server at ``server``, its failure as one line."""
    try:
        return call()
    except AmoebaError as exc:
        raise UserError(remote_error_line(exc, server)) from None
