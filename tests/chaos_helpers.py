"""Shared tools of the chaos, load and hostile-input tests: processes, a cuttable TCP proxy, invariants, snapshots."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

import db
from db.engine import dialect_of
from domain.errors import AmoebaError
from protos.client import OrchestratorClient
from tables.nb201 import Table, load_table
from worker.loop import Backoff, Worker, WorkerConfig, WorkerSummary
from worker.table import TableEvaluator

ROOT = Path(__file__).resolve().parent.parent
AMOEBA = [sys.executable, "-m", "cli.main"]
_TABLE: Table | None = None
T = TypeVar("T")


def table() -> Table:
    """The shipped NB201 table, parsed once per test process (threads share it read-only)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = load_table(None)
    return _TABLE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("AMOEBA_")}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return out


def experiment_config(name: str, *, evaluations: int, population: int = 10, sample: int = 3, seed: int = 7,
                      lease_timeout_s: float = 1.0, max_attempts: int = 50,
                      sleep_s: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """An NB201 table experiment; short leases so that lost work comes back within a second or two."""
    return {"name": name, "space": "nb201", "population": population, "sample": sample, "evaluations": evaluations,
            "seed": seed, "lease_timeout_s": lease_timeout_s, "max_attempts": max_attempts,
            "training": {"table": {"sleep_s": list(sleep_s)}}}


def create_experiment(url: str, config: dict[str, Any]) -> None:
    from orchestrator.config import parse_spec
    from orchestrator.service import OrchestratorService

    store = db.open_store(url)
    try:
        OrchestratorService(store).create_experiment(parse_spec(config))
    finally:
        store.close()


# --- processes ------------------------------------------------------------------------------------------


class ServerProcess:
    """``amoeba server`` as a child process on a fixed port (so a restarted one has the same address)."""

    def __init__(self, url: str, port: int, *extra: str) -> None:
        self.url, self.port, self.extra = url, port, extra
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen(
            [*AMOEBA, "server", "--db", self.url, "--port", str(self.port), "--json", "--log-level", "ERROR",
             "--grace", "1", *self.extra],
            cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        # The JSON line comes once the port is bound (a port left by a killed server is free at once).
        line = _readline(self.proc.stdout, timeout)
        if not line:
            self.proc.kill()
            raise AssertionError(f"server did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
        assert json.loads(line)["port"] == self.port
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no graceful stop, no flushing; whatever was committed is all that is left."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0 if self.proc is None else int(self.proc.returncode)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return -9

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def _readline(stream: Any, timeout: float) -> str:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else ""


def worker_process(address: str, experiment: str, worker_id: str) -> subprocess.Popen[str]:
    """``amoeba worker`` (table evaluator) as a child process."""
    return subprocess.Popen(
        [*AMOEBA, "worker", "--server", address, "--experiment", experiment, "--evaluator", "table", "--json",
         "--log-level", "ERROR", "--worker-id", worker_id, "--give-up-after", "120"],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )


# --- in-process workers ---------------------------------------------------------------------------------


class RecordingClient(OrchestratorClient):
    """A worker client that records every call: method, start, seconds, status code (None when OK).

    The client raises domain errors (never ``grpc.RpcError``); each carries the status code's name in
    ``.code``, recorded here as the ``grpc.StatusCode`` it names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, float, float, grpc.StatusCode | None]] = []
        self._calls_lock = threading.Lock()

    def _call(self, method: str, request: Any, decode: Callable[[Any], T]) -> T:
        started = time.monotonic()
        code: grpc.StatusCode | None = None
        try:
            return super()._call(method, request, decode)
        except AmoebaError as exc:
            code = grpc.StatusCode[getattr(exc, "code", "UNKNOWN")]
            raise
        finally:
            with self._calls_lock:
                self.calls.append((method, started, time.monotonic() - started, code))

    def codes(self, method: str | None = None) -> Counter[grpc.StatusCode | None]:
        return Counter(c for m, _, _, c in self.calls if method is None or m == method)


@dataclass
class ThreadWorker:
    """A real worker loop (``worker.loop.Worker`` + table evaluator) on a thread with its own channel."""

    address: str
    experiment: str
    worker_id: str
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.05, cap_s=0.5, give_up_after_s=120.0))
    evaluator: Any = None
    token: str | None = None
    rpc_timeout_s: float = 15.0
    summary: WorkerSummary | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.client = RecordingClient(self.address, token=self.token, rpc_timeout_s=self.rpc_timeout_s)
        self.loop = Worker(self.client, self.evaluator or TableEvaluator(),
                           WorkerConfig(experiment=self.experiment, worker_id=self.worker_id, backoff=self.backoff,
                                        max_idle_wait_s=0.5), seed=hash(self.worker_id) & 0xFFFF)
        self.thread = threading.Thread(target=self._run, name=f"worker-{self.worker_id}", daemon=True)

    def _run(self) -> None:
        try:
            self.summary = self.loop.run()
        except BaseException as exc:
            self.error = exc

    def start(self) -> ThreadWorker:
        self.thread.start()
        return self

    def join(self, timeout: float) -> WorkerSummary:
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.loop.request_stop()
            self.thread.join(10)
            raise AssertionError(f"worker {self.worker_id} did not finish within {timeout}s")
        self.client.close()
        if self.error is not None:
            raise AssertionError(f"worker {self.worker_id} failed: {self.error!r}") from self.error
        assert self.summary is not None
        return self.summary


# --- certificates --------------------------------------------------------------------------------------


def certificates() -> dict[str, bytes]:
    """A fresh CA and the certificates it signs, as PEM bytes: ``ca``, ``server``/``server_key`` (for localhost
    and 127.0.0.1) and ``client``/``client_key`` (for mutual TLS). Each call makes an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def cert(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool, sans: list[Any] | None = None) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key or key, hashes.SHA256())

    out: dict[str, bytes] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("amoeba test CA", ca_key, None, None, True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = cert("localhost", server_key, ca.subject, ca_key, False,
                  [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = cert("worker", client_key, ca.subject, ca_key, False)
    enc = serialization.Encoding.PEM
    out.update(ca=ca.public_bytes(enc), server=server.public_bytes(enc), server_key=pem_key(server_key),
               client=client.public_bytes(enc), client_key=pem_key(client_key))
    return out


# --- a TCP proxy that can be cut --------------------------------------------------------------------------


class TcpProxy:
    """Forwards a loopback port to ``target``. ``stop`` closes the listener and cuts every connection (the
    address becomes unreachable: connection refused); ``start`` listens again on the same port. With
    ``delay_s`` every chunk of bytes waits that long before it is passed on, in both directions (a slow link)."""

    def __init__(self, target_port: int, delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = free_port()
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.delay_s:
                    time.sleep(self.delay_s)  # the link's latency, not a synchronisation
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown first: a close alone leaves a thread blocked in accept() holding the socket open.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


# --- what must hold after every scenario -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """The figures of a finished scenario (what the README's Reliability table reports)."""

    proposals: int
    completed: int
    failed: int
    lost: int  # proposals of a finished experiment without an outcome
    duplicates: int  # evaluations counted more than once
    expired: int  # leases that expired (and were re-issued or failed)
    events: int


def check_invariants(url: str, name: str) -> Outcome:
    """Assert the invariants of a finished experiment straight from the database; return its figures.

    Every proposal exists once and has exactly one outcome; completed = C with completion ranks 0..C-1 and
    one ``completed`` event per completed individual; the stored population is the last P completed; the
    event log is dense; and ``amoeba replay --verify`` re-derives every proposal from the seed.
    """
    from orchestrator.config import spec_from_json

    store = db.open_store(url)
    try:
        with store.transaction() as tx:
            exp = tx.experiment(name)
            assert exp is not None, f"no experiment {name}"
            rows = tx.individuals(exp.id, -1, 10**7)
            population = [r.proposal_seq for r in tx.population(exp.id)]
            events = tx.events(exp.id, 0, 10**8)
    finally:
        store.close()
    spec = spec_from_json(exp.config_json)
    c, p = spec.evaluations, spec.population_size
    assert exp.state == "done", f"experiment {name} is {exp.state} ({exp.completed}/{c})"
    seqs = [r.proposal_seq for r in rows]
    assert sorted(seqs) == list(range(exp.proposals)), "proposals are not numbered 0..N-1 exactly once"
    states = Counter(r.state for r in rows)
    lost = states["queued"] + states["leased"]
    assert lost == 0, f"unfinished proposals in a finished experiment: {states}"
    completed = [r for r in rows if r.state == "completed"]
    assert exp.completed == len(completed) == c, (exp.completed, len(completed), c)
    assert exp.failed == states["failed"] and exp.rejected == states["rejected"]
    assert sorted(r.completion_rank for r in completed) == list(range(c)), "completion ranks are not 0..C-1"
    assert all(r.completion_rank is None for r in rows if r.state != "completed")
    kinds = Counter(e.kind for e in events)
    done_events = Counter(e.individual_id for e in events if e.kind == "completed")
    duplicates = sum(n - 1 for n in done_events.values() if n > 1)
    assert duplicates == 0 and kinds["completed"] == c, f"{kinds['completed']} completed events for C = {c}"
    assert set(done_events) == {r.id for r in completed}
    assert [e.seq for e in events] == list(range(1, exp.event_seq + 1)), "the event log has gaps"
    last_p = [r.proposal_seq for r in sorted(completed, key=lambda r: r.completion_rank or 0)[-p:]]
    assert sorted(population) == sorted(last_p), "the population is not the last P completed members"
    verdict = replay_verify(url, name)
    assert verdict["ok"] and verdict["proposals"] == exp.proposals and verdict["completed"] == c, verdict
    outcome = Outcome(exp.proposals, c, states["failed"], lost, duplicates, kinds["expired"], len(events))
    # One line per scenario for the README's Reliability table (visible with pytest -s).
    print(f"\nreliability {name} {dialect_of(url)}:",
          json.dumps(dataclasses.asdict(outcome), sort_keys=True))
    return outcome


def replay_verify(url: str, name: str) -> dict[str, Any]:
    """``amoeba replay --db URL --experiment NAME --verify --json``, run in this process."""
    from cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["replay", "--db", url, "--experiment", name, "--verify", "--json"])
    text = out.getvalue().strip()
    assert text, "amoeba replay --verify printed nothing"
    result: dict[str, Any] = json.loads(text.splitlines()[-1])
    return result


def snapshot(url_or_engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal snapshots mean the database did not change."""
    from sqlalchemy import text

    from db.engine import make_engine

    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as conn:
            return {t: sorted((tuple(r) for r in conn.execute(text(f"SELECT * FROM {t}"))), key=repr)
                    for t in ("experiments", "individuals", "events", "workers")}
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def status(url: str, name: str) -> dict[str, Any]:
    """The service's status document, read straight from the database."""
    from orchestrator.service import OrchestratorService

    store = db.open_store(url, check=False)  # polled often: skip the schema check
    try:
        return OrchestratorService(store).status(name)
    finally:
        store.close()


@contextlib.contextmanager
def opened_service(url: str) -> Iterator[Any]:
    from orchestrator.service import open_service

    svc = open_service(url)
    try:
        yield svc
    finally:
        svc.store.close()
