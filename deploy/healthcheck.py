#!/usr/bin/env python3
"""Container health probe: asks a gRPC server's standard grpc.health.v1 service whether it is SERVING.

Exit 0 when SERVING, 1 otherwise, with one line on stderr. Used by docker-compose's healthcheck so
no grpc_health_probe binary is needed; it only needs grpcio and grpcio-health-checking. The health
service is open (no token); with TLS, pass the CA that signed the server's certificate, and for
mutual TLS a client certificate and key. Every option falls back to an environment variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _env(name: str) -> str | None:
    # Compose passes unset optional variables as empty strings; treat them as absent.
    return os.environ.get(name) or None


def check(
    server: str,
    service: str = "",
    timeout: float = 3.0,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    authority: str | None = None,
) -> tuple[bool, str]:
    """(serving, message) for one Health.Check call against ``server`` (HOST:PORT)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if (tls_cert is None) != (tls_key is None):
        return False, "a client certificate needs both --tls-cert and --tls-key"
    options = [("grpc.ssl_target_name_override", authority)] if authority else []
    try:
        if tls_ca or tls_cert:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
            )
            channel = grpc.secure_channel(server, creds, options=options)
        else:
            channel = grpc.insecure_channel(server, options=options)
    except OSError as exc:
        return False, f"cannot read TLS file: {exc}"
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            return False, f"{server}: {code}: {details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{server} {service or '(server)'}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", default=_env("AMOEBA_HEALTH_SERVER") or "localhost:50051", help="HOST:PORT")
    parser.add_argument("--service", default="", help="service name to check ('' = the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds before the call fails")
    parser.add_argument("--tls-ca", default=_env("AMOEBA_TLS_CA"), help="CA of the server's certificate (env AMOEBA_TLS_CA)")
    parser.add_argument("--tls-cert", default=_env("AMOEBA_TLS_CLIENT_CERT"),
                        help="client certificate for mutual TLS (env AMOEBA_TLS_CLIENT_CERT)")
    parser.add_argument("--tls-key", default=_env("AMOEBA_TLS_CLIENT_KEY"),
                        help="client key for mutual TLS (env AMOEBA_TLS_CLIENT_KEY)")
    parser.add_argument("--authority", default=_env("AMOEBA_TLS_AUTHORITY"),
                        help="host name the server certificate is issued for, when it is not the --server host")
    parser.add_argument("--quiet", action="store_true", help="print nothing when serving")
    args = parser.parse_args(argv)
    ok, message = check(args.server, args.service, args.timeout, args.tls_ca, args.tls_cert, args.tls_key,
                        args.authority)
    if not ok:
        print(f"healthcheck: {message}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
