"""deploy/healthcheck.py against a real gRPC health service on a loopback port, plain and with TLS."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from deploy_helpers import ROOT, load_healthcheck
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

pytestmark = pytest.mark.grpc

hc = load_healthcheck()


def _serve(credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, Any, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = (server.add_secure_port("localhost:0", credentials) if credentials
            else server.add_insecure_port("localhost:0"))
    server.start()
    return server, servicer, port


@pytest.fixture
def plain() -> Iterator[tuple[Any, int]]:
    server, servicer, port = _serve()
    yield servicer, port
    server.stop(None).wait()


def test_serving_not_serving_and_unknown_service(plain: tuple[Any, int], capsys: pytest.CaptureFixture[str]) -> None:
    servicer, port = plain
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("amoeba.v1.Orchestrator", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert hc.main(["--server", f"localhost:{port}"]) == 0
    assert "SERVING" in capsys.readouterr().out
    assert hc.main(["--server", f"localhost:{port}", "--service", "amoeba.v1.Orchestrator"]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err
    assert hc.main(["--server", f"localhost:{port}", "--service", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("healthcheck: ") and "NOT_FOUND" in err and err.count("\n") == 1


def test_nothing_listening_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    server, _, port = _serve()
    server.stop(None).wait()
    assert hc.main(["--server", f"localhost:{port}", "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err


def test_empty_environment_variables_mean_unset(monkeypatch: pytest.MonkeyPatch, plain: tuple[Any, int]) -> None:
    servicer, port = plain
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in ("AMOEBA_TLS_CA", "AMOEBA_TLS_CLIENT_CERT", "AMOEBA_TLS_CLIENT_KEY", "AMOEBA_TLS_AUTHORITY"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("AMOEBA_HEALTH_SERVER", f"localhost:{port}")
    assert hc.main(["--quiet"]) == 0


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orchestrator")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("orchestrator"), x509.DNSName("localhost")]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_the_servers_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = _self_signed(tmp_path)
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server, servicer, port = _serve(creds)
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert hc.main(["--server", f"localhost:{port}", "--tls-ca", str(cert)]) == 0
        # The certificate names "orchestrator" (the compose service); --authority checks against it.
        assert hc.main(["--server", f"localhost:{port}", "--tls-ca", str(cert), "--authority", "orchestrator"]) == 0
        capsys.readouterr()
        # Plain text against a TLS port is refused.
        assert hc.main(["--server", f"localhost:{port}", "--timeout", "1"]) == 1
        assert hc.main(["--server", f"localhost:{port}", "--tls-ca", str(tmp_path / "missing.crt")]) == 1
        assert "cannot read TLS file" in capsys.readouterr().err
    finally:
        server.stop(None).wait()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="deploy/make-certs.sh needs the openssl command")
def test_make_certs_gives_a_working_mutual_tls_setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run([str(ROOT / "deploy" / "make-certs.sh"), str(certs), "head.example.org"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    creds = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.crt").read_bytes())],
        root_certificates=(certs / "ca.crt").read_bytes(), require_client_auth=True,
    )
    server, servicer, port = _serve(creds)
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        target = f"localhost:{port}"
        ca, cert, key = (str(certs / n) for n in ("ca.crt", "client.crt", "client.key"))
        assert hc.main(["--server", target, "--tls-ca", ca, "--tls-cert", cert, "--tls-key", key]) == 0
        # The names a worker may dial: the compose service and the extra host name.
        for name in ("orchestrator", "head.example.org"):
            assert hc.main(["--server", target, "--tls-ca", ca, "--tls-cert", cert, "--tls-key", key,
                            "--authority", name]) == 0
        capsys.readouterr()
        assert hc.main(["--server", target, "--tls-ca", ca, "--timeout", "1"]) == 1  # no client certificate
        assert hc.main(["--server", target, "--tls-ca", ca, "--tls-cert", cert]) == 1
        assert "needs both --tls-cert and --tls-key" in capsys.readouterr().err
    finally:
        server.stop(None).wait()
    # A second run refuses to overwrite the keys.
    again = subprocess.run([str(ROOT / "deploy" / "make-certs.sh"), str(certs)], capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr


def test_probe_passes_the_real_orchestrator_without_its_token(capsys: pytest.CaptureFixture[str]) -> None:
    # The compose health check sends no token: the orchestrator must keep grpc.health.v1 open.
    from db.memory import MemoryStore
    from orchestrator.server import ServerConfig, start
    from orchestrator.service import OrchestratorService

    running = start(OrchestratorService(MemoryStore()), ServerConfig(host="127.0.0.1", port=0, token="s3cret"))
    target = f"127.0.0.1:{running.port}"
    try:
        assert hc.main(["--server", target]) == 0
        assert hc.main(["--server", target, "--service", "amoeba.v1.Orchestrator"]) == 0
    finally:
        running.stop(0.5)
    capsys.readouterr()
    assert hc.main(["--server", target, "--timeout", "1"]) == 1
