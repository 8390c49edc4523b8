"""The orchestrator process: the servicer on a real port, health and reflection, auth, TLS, graceful stop.

The service is synchronous (SQL), so handlers run in a bounded thread pool; the network side is the
classic thread-pool server (``mode="sync"``, the default) or the asyncio server (``mode="aio"``, whose
synchronous handlers run in its migration thread pool). Measured with 16 client processes on SQLite
(benchmarks/orchestrator_throughput.py, 2 cores): sync 695-705 evaluations/s, aio 450-455, whatever
the pool size; the extra hop from the event loop to the pool costs more than the loop saves while
every call is a database transaction. SIGTERM or SIGINT: health turns NOT_SERVING, new calls are refused, in-flight calls
finish (up to ``grace_s``), and ``serve`` returns so the process exits 0.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from domain import Unavailable
from domain.errors import AmoebaError
from orchestrator.service import OrchestratorService
from orchestrator.servicer import SERVICE_NAME, OrchestratorServicer
from protos.amoeba.v1 import orchestrator_pb2 as pb

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Seconds between database probes while health is NOT_SERVING because the database was unreachable.
DATABASE_PROBE_S = 0.5
ServerMode = Literal["aio", "sync"]


class ServerConfigError(AmoebaError, ValueError):
    """The server options are inconsistent (TLS key without certificate, unreadable file, ...)."""


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """PEM bytes. With ``client_ca`` the server requires client certificates signed by it (mTLS)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert: str | Path | None, key: str | Path | None, client_ca: str | Path | None = None) -> TLSConfig | None:
        if cert is None and key is None:
            if client_ca is not None:
                raise ServerConfigError("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if cert is None or key is None:
            raise ServerConfigError("TLS needs both --tls-cert and --tls-key")
        return cls(_read(cert, "TLS certificate"), _read(key, "TLS key"), _read(client_ca, "client CA") if client_ca else None)


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ServerConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 picks a free port
    token: str | None = None
    tls: TLSConfig | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    handler_threads: int = 4
    grace_s: float = 10.0
    mode: ServerMode = "sync"
    #: Seconds between sweeps that requeue expired leases with no worker calling in (0: no sweeper).
    sweep_interval_s: float = 5.0

    def options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            # Workers keep one channel open with keepalive pings; allow them without data in flight.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.so_reuseport", 0),
        ]


def _authorized(metadata: Sequence[Any] | None, expected: bytes) -> bool:
    for item in metadata or ():
        key, value = item[0], item[1]
        if key == "authorization":
            given = value.encode() if isinstance(value, str) else value
            return hmac.compare_digest(given, expected)
    return False


_DENIED = "missing or wrong token: send metadata 'authorization: Bearer <token>'"


def _deny_like(handler: Any, deny: Callable[..., Any]) -> Any:
    # A denial must have the same streaming shape as the method it replaces.
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Bearer-token check for the thread-pool server; health checks stay open for probes."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        if _authorized(handler_call_details.invocation_metadata, self._expected):
            return handler

        def deny(_request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)

        return _deny_like(handler, deny)


class AioTokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Bearer-token check for the asyncio server; health checks stay open for probes."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        if _authorized(handler_call_details.invocation_metadata, self._expected):
            return handler

        async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _DENIED)

        return _deny_like(handler, deny)


def _credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)], root_certificates=tls.client_ca, require_client_auth=tls.client_ca is not None
    )


def _bind(server: Any, config: ServerConfig) -> int:
    address = f"{config.host}:{config.port}"
    try:
        port = server.add_secure_port(address, _credentials(config.tls)) if config.tls else server.add_insecure_port(address)
    except RuntimeError as exc:
        # grpc's message ends in advice about GRPC_VERBOSITY; the likely causes help a user more.
        raise ServerConfigError(f"cannot listen on {address}: {str(exc).split(';')[0]} (port in use, or not a local address?)") from None
    if port == 0:
        raise ServerConfigError(f"cannot listen on {address} (in use or not a local address)")
    return int(port)


_SERVED = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """Request bytes that do not parse (corrupt wire format, bad UTF-8 in a string field)."""

    error: str


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    # gRPC answers a deserializer's exception with UNKNOWN (aio) or INTERNAL (sync), which reads like a
    # server bug; handing the failure to the handler lets it answer INVALID_ARGUMENT instead.
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:
            return _Undecodable(str(exc))

    return deserialize


def _add_orchestrator(servicer: OrchestratorServicer, server: Any, max_bytes: int) -> None:
    """The generated ``add_OrchestratorServicer_to_server``, with lenient request parsing (see ``_lenient``)
    and a response too large to send logged and answered RESOURCE_EXHAUSTED (gRPC would drop it silently on
    this side; the caller would see only its own error)."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Orchestrator"].methods:
        request, response = getattr(pb, method.input_type.name), getattr(pb, method.output_type.name)

        def handle(req: Any, context: grpc.ServicerContext, _impl: Any = getattr(servicer, method.name),
                   _name: str = method.name) -> Any:
            if isinstance(req, _Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {req.error}"[:1000])
            answer = _impl(req, context)
            size = answer.ByteSize() if answer is not None else 0
            if size > max_bytes:
                log.error("%s: the response is %d bytes, more than --max-message-mb allows (%d); not sent",
                          _name, size, max_bytes)
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"the {_name} response is {size:,} bytes, over the server's limit of {max_bytes:,}")
            return answer

        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=_lenient(request.FromString), response_serializer=response.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


class RunningServer:
    """A started server. ``port`` is the bound port; ``stop`` is graceful and idempotent; thread-safe."""

    def __init__(self, service: OrchestratorService, config: ServerConfig) -> None:
        self.config = config
        self._pool = ThreadPoolExecutor(max_workers=config.handler_threads, thread_name_prefix="amoeba-rpc")
        self._server: Any = None  # grpc.Server or grpc.aio.Server, by mode
        self._stopped = threading.Event()
        self._sweep_stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._stop_lock = threading.Lock()
        self._service = service
        self._database_up = True
        self._database_lock = threading.Lock()
        servicer = OrchestratorServicer(service, on_database=self._database_state)
        try:
            if config.mode == "aio":
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="amoeba-aio", daemon=True)
                self._thread.start()
                self.port = asyncio.run_coroutine_threadsafe(self._start_aio(servicer), self._loop).result()
            else:
                self._start_sync(servicer)
            if config.sweep_interval_s > 0:
                self._sweeper = threading.Thread(target=self._sweep, name="amoeba-sweeper", daemon=True)
                self._sweeper.start()
        except BaseException:
            # Could not bind (port taken, bad address): leave no loop thread or pool behind.
            if config.mode == "aio":
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
                self._loop.close()
            self._pool.shutdown(wait=False)
            raise

    # --- asyncio server -------------------------------------------------------------------------------

    async def _start_aio(self, servicer: OrchestratorServicer) -> int:
        interceptors = [AioTokenAuthInterceptor(self.config.token)] if self.config.token else []
        # Synchronous handlers run in ``migration_thread_pool``: the bounded pool for service calls.
        self._server = grpc.aio.server(
            migration_thread_pool=self._pool, interceptors=interceptors, options=self.config.options()
        )
        _add_orchestrator(servicer, self._server, self.config.max_message_bytes)
        self._health: Any = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(_SERVED, self._server)
        port = _bind(self._server, self.config)
        await self._server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def _stop_aio(self, grace: float) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    # --- thread-pool server ---------------------------------------------------------------------------

    def _start_sync(self, servicer: OrchestratorServicer) -> None:
        interceptors: list[grpc.ServerInterceptor] = [TokenAuthInterceptor(self.config.token)] if self.config.token else []
        self._server = grpc.server(self._pool, interceptors=interceptors, options=self.config.options())
        _add_orchestrator(servicer, self._server, self.config.max_message_bytes)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(_SERVED, self._server)
        self.port = _bind(self._server, self.config)
        self._server.start()
        for name in ("", SERVICE_NAME):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    # --- health follows the database ------------------------------------------------------------------------

    def _database_state(self, available: bool) -> None:
        if available == self._database_up:  # the common case: no lock, no change
            return
        with self._database_lock:
            if available == self._database_up:
                return
            self._database_up = available
        log.warning("database %s: health %s", "reachable again" if available else "unreachable",
                    "SERVING" if available else "NOT_SERVING")
        self._set_health(health_pb2.HealthCheckResponse.SERVING if available
                         else health_pb2.HealthCheckResponse.NOT_SERVING)
        if not available:
            # Without traffic nobody would notice the database coming back: probe it until it answers.
            threading.Thread(target=self._probe_database, name="amoeba-db-probe", daemon=True).start()

    def _set_health(self, status: Any) -> None:
        if self._stopped.is_set():
            return
        try:
            for name in ("", SERVICE_NAME):
                if self.config.mode == "aio":
                    asyncio.run_coroutine_threadsafe(self._health.set(name, status), self._loop).result(5)
                else:
                    self._health.set(name, status)
        except RuntimeError:  # the loop closed under us: the server is stopping anyway
            pass

    def _probe_database(self) -> None:
        while not self._database_up and not self._stopped.wait(DATABASE_PROBE_S):
            try:
                self._service.list_experiments()
            except Unavailable:
                continue
            except Exception:  # any other answer means the database answered
                pass
            self._database_state(True)

    def _sweep(self) -> None:
        """Requeue expired leases every ``sweep_interval_s``: without it a lease whose worker died stays
        leased until some other worker calls in (with one worker, forever)."""
        while not self._sweep_stop.wait(self.config.sweep_interval_s):
            try:
                expired = self._service.sweep()
            except Unavailable:
                continue  # the database is down: the health probe reports it; sweep again later
            except Exception:
                log.exception("lease sweep failed")
                continue
            if expired:
                log.info("lease sweeper: %d expired lease(s) requeued or failed", expired)

    # --- both -------------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "[::]") else "127.0.0.1"
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, let in-flight calls finish within ``grace`` seconds, release the port."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.config.grace_s if grace is None else grace
            self._sweep_stop.set()
            if self._sweeper is not None:
                self._sweeper.join()
            if self.config.mode == "aio":
                asyncio.run_coroutine_threadsafe(self._stop_aio(grace), self._loop).result()
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
                self._loop.close()
            else:
                self._health.enter_graceful_shutdown()
                self._server.stop(grace).wait()
            self._pool.shutdown(wait=True)
            self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


def start(service: OrchestratorService, config: ServerConfig) -> RunningServer:
    """Start serving in background threads (tests, ``amoeba up``); call ``stop`` when done."""
    return RunningServer(service, config)


def serve(
    service: OrchestratorService, config: ServerConfig, on_started: Callable[[RunningServer], None] | None = None
) -> None:
    """Serve in the foreground until SIGTERM or SIGINT, then shut down gracefully and return."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        running = start(service, config)
        if on_started is not None:
            on_started(running)
        stop.wait()
        log.info("shutting down: finishing in-flight calls (grace %.1fs)", config.grace_s)
        running.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
