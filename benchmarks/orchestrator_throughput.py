"""Orchestrator throughput: K client processes lease and report at once against a real `amoeba server`.

    .venv/bin/python benchmarks/orchestrator_throughput.py --json [--clients 16] [--seconds 10]
        [--databases sqlite,postgresql] [--mode sync|aio] [--threads N]

For each database kind: migrate a fresh database, create an NB201 experiment (P = 50, S = 10, C large
enough never to end), start `amoeba server` as its own process, then K client processes (spawned)
loop ``ReportResult(lease_next=True)`` with an instant synthetic evaluation for ``--seconds`` from a
common start time. The peer in the same run is Optuna's RDB storage on the same database kind, with K
processes each running ``study.optimize`` on an instant objective (RandomSampler, so Optuna's time
goes to its storage, as ours does).

JSON (stable): ``{"amoeba": {KIND: {"evals_per_s", "lease_p50_ms", "lease_p99_ms", "report_p50_ms",
"report_p99_ms", "evaluations", "seconds", "cpu_ms_per_eval"}}, "optuna": {KIND: {"trials_per_s", "trials",
"seconds", "cpu_ms_per_trial"}}, "ratio": {KIND: amoeba evals/s over optuna trials/s}, "clients": K,
"seconds": S, "server_mode": ..., "server_threads": ..., "skipped": {KIND: reason}, "date": "YYYY-MM-DD HH:MM",
"load_average": {"start": [1, 5, 15 min], "end": [...]}}``. With ``lease_next`` a report and the next lease
are one round trip, so ``lease_*`` (time to get the next work) and ``report_*`` are the same calls.
``cpu_ms_per_*`` is ``{"clients", "server", "database"}``: CPU milliseconds per evaluation (trial) used by
the client processes, the ``amoeba server`` process (null for Optuna, which has none) and PostgreSQL's
processes (null on SQLite, which runs inside the others) over the run. On a shared machine the rates move
with the other jobs; these CPU figures much less so.
PostgreSQL is a throwaway server started like the test suite's (``tests/conftest.py``: Debian's
``postgresql`` binaries, run as the ``postgres`` user when root).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- amoeba ---------------------------------------------------------------------------------------------


def _amoeba_client(address: str, experiment: str, index: int, gate: Any, seconds: float, out: Any) -> None:
    import grpc

    from protos.amoeba.v1 import orchestrator_pb2 as pb
    from protos.amoeba.v1 import orchestrator_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(address)
    stub = pb_grpc.OrchestratorStub(channel)
    worker = pb.WorkerInfo(worker_id=f"bench-{os.getpid()}-{index}", host="localhost", evaluator="synthetic")
    stub.ListExperiments(pb.ListExperimentsRequest(), timeout=60)  # connected before the clock starts
    start_at = _wait_for_start(gate)
    latencies: list[float] = []
    t = time.perf_counter()
    reply = stub.LeaseWork(pb.LeaseWorkRequest(worker=worker, experiment=experiment), timeout=60)
    latencies.append(time.perf_counter() - t)
    work = reply.work if reply.WhichOneof("result") == "work" else None
    done = 0
    end = start_at + seconds
    while time.time() < end:
        if work is None:
            time.sleep(0.001)
            t = time.perf_counter()
            reply = stub.LeaseWork(pb.LeaseWorkRequest(worker=worker, experiment=experiment), timeout=60)
            latencies.append(time.perf_counter() - t)
            work = reply.work if reply.WhichOneof("result") == "work" else None
            continue
        # An instant evaluation: a pseudo-accuracy from the genome, so selection has something to rank.
        accuracy = (hash(work.genome_json) % 1000) / 1000.0
        t = time.perf_counter()
        nxt = stub.ReportResult(pb.ReportResultRequest(
            individual_id=work.individual_id, token=work.token, worker_id=worker.worker_id,
            metrics=pb.Metrics(accuracy=accuracy), lease_next=True), timeout=60)
        latencies.append(time.perf_counter() - t)
        done += 1
        work = nxt.work if nxt.WhichOneof("next") == "work" else None
    channel.close()
    out.put((done, latencies))


def _wait_for_start(gate: Any) -> float:
    ready, go, start_at = gate
    ready.put(os.getpid())
    go.wait()
    at = float(start_at.value)
    time.sleep(max(0.0, at - time.time()))
    return at


def _cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) a process has used (with ``children``: plus its reaped children's); Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(root: int) -> float:
    """CPU seconds of a process, its reaped children and its live children (PostgreSQL's postmaster and backends)."""
    total = _cpu_s(root, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == root:
                total += _cpu_s(int(entry.name))
    return total


class _Meter:
    """CPU seconds over the measured window: the clients (reaped child processes), and optionally a server
    process and the database server's processes."""

    def __init__(self, server_pid: int | None = None, db_pid: int | None = None) -> None:
        self.server_pid, self.db_pid = server_pid, db_pid
        self.start: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.used: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float]:
        import resource

        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (kids.ru_utime + kids.ru_stime, _cpu_s(self.server_pid) if self.server_pid else 0.0,
                _tree_cpu_s(self.db_pid) if self.db_pid else 0.0)

    def begin(self, client_pids: list[int]) -> None:
        # The clients are counted once reaped (their whole life); what they used before the start (spawning,
        # imports, connecting) is taken off.
        kids, server, database = self._now()
        self.start = (kids + sum(_cpu_s(pid) for pid in client_pids), server, database)

    def end(self) -> None:
        self.used = tuple(b - a for a, b in zip(self.start, self._now(), strict=True))  # type: ignore[assignment]

    def per(self, n: int) -> dict[str, float | None]:
        """CPU milliseconds per unit of work (``clients``; ``server`` and ``database`` when measured)."""
        clients, server, database = self.used
        return {"clients": round(clients / n * 1e3, 3) if n else None,
                "server": round(server / n * 1e3, 3) if n and self.server_pid else None,
                "database": round(database / n * 1e3, 3) if n and self.db_pid else None}


def _run_clients(target: Any, args: tuple[Any, ...], clients: int, seconds: float,
                 meter: _Meter | None = None) -> tuple[list[Any], float]:
    """Spawn the clients, let them get ready (imports, connections), start them together, collect results."""
    ctx = mp.get_context("spawn")
    out, ready, go, start_at = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    procs = [ctx.Process(target=target, args=(*args, k, (ready, go, start_at), seconds, out)) for k in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=300)
    start_at.value = time.time() + 0.2
    if meter is not None:
        meter.begin([p.pid for p in procs if p.pid is not None])
    go.set()
    results = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(30)
    if meter is not None:
        meter.end()  # the clients are reaped (their CPU counted), the servers still run
    return results, float(start_at.value)


def _start_server(url: str, mode: str, threads: int) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("AMOEBA_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "server", "--db", url, "--port", "0", "--json", "--log-level", "WARNING",
         "--mode", mode, "--threads", str(threads)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"amoeba server did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, f"127.0.0.1:{json.loads(line)['port']}"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_amoeba(url: str, clients: int, seconds: float, mode: str, threads: int,
                 db_pid: int | None = None) -> dict[str, Any]:
    import db
    from orchestrator.config import parse_spec
    from orchestrator.service import OrchestratorService

    store = db.open_store(url)
    name = f"throughput-{os.getpid()}"
    OrchestratorService(store).create_experiment(parse_spec(
        {"name": name, "space": "nb201", "population": 50, "sample": 10, "evaluations": 100_000_000, "seed": 1}))
    store.close()
    server, address = _start_server(url, mode, threads)
    meter = _Meter(server.pid, db_pid)
    try:
        results, _ = _run_clients(_amoeba_client, (address, name), clients, seconds, meter)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    done = sum(r[0] for r in results)
    latencies = [x for r in results for x in r[1]]
    p50, p99 = _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000
    return {"evals_per_s": round(done / seconds, 1), "lease_p50_ms": round(p50, 2), "lease_p99_ms": round(p99, 2),
            "report_p50_ms": round(p50, 2), "report_p99_ms": round(p99, 2), "evaluations": done, "seconds": seconds,
            "cpu_ms_per_eval": meter.per(done)}


# --- optuna ---------------------------------------------------------------------------------------------


def _optuna_client(url: str, study: str, index: int, gate: Any, seconds: float, out: Any) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    s = optuna.load_study(study_name=study, storage=storage, sampler=optuna.samplers.RandomSampler())
    _wait_for_start(gate)
    s.optimize(lambda trial: trial.suggest_float("x", -10, 10) ** 2, timeout=seconds, gc_after_trial=False)
    out.put(None)


def bench_optuna(url: str, clients: int, seconds: float, db_pid: int | None = None) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    name = f"optuna-{os.getpid()}"
    study = optuna.create_study(study_name=name, storage=storage)
    meter = _Meter(None, db_pid)
    _, start_at = _run_clients(_optuna_client, (url, name), clients, seconds, meter)
    # optimize(timeout=...) lets the trial in progress finish: count trials completed inside the window.
    end = start_at + seconds
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE and t.datetime_complete is not None
              and t.datetime_complete.timestamp() <= end]
    storage.remove_session()
    return {"trials_per_s": round(len(trials) / seconds, 1), "trials": len(trials), "seconds": seconds,
            "cpu_ms_per_trial": meter.per(len(trials))}


# --- databases ------------------------------------------------------------------------------------------


def _pg_server() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import PgServer  # the test suite's throwaway PostgreSQL

    return PgServer()


def _load() -> list[float]:
    """The 1-, 5- and 15-minute load averages (the machine is shared: every figure comes with them)."""
    return [round(x, 2) for x in os.getloadavg()]


def _postmaster_pid(pg: Any) -> int | None:
    try:
        return int((Path(pg.data) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="client processes (and Optuna worker processes)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--mode", default="sync", choices=("aio", "sync"), help="amoeba server --mode")
    parser.add_argument("--threads", type=int, default=4, help="amoeba server --threads")
    parser.add_argument("--skip-optuna", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the JSON document only")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    if not kinds or any(k not in ("sqlite", "postgresql") for k in kinds) or args.clients < 1 or args.seconds <= 0:
        print("orchestrator_throughput: error: --databases takes sqlite,postgresql; --clients and --seconds must be positive",
              file=sys.stderr)
        return 2
    import db

    doc: dict[str, Any] = {"amoeba": {}, "optuna": {}, "ratio": {}, "clients": args.clients, "seconds": args.seconds,
                           "server_mode": args.mode, "server_threads": args.threads, "skipped": {},
                           "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": {"start": _load()}}
    tmp = Path(tempfile.mkdtemp(prefix="amoeba-bench-"))
    pg = None
    try:
        for kind in kinds:
            if kind == "sqlite":
                ours, theirs = f"sqlite:///{tmp / 'amoeba.db'}", f"sqlite:///{tmp / 'optuna.db'}"
            else:
                try:
                    pg = pg or _pg_server()
                except Exception as exc:
                    doc["skipped"][kind] = f"no PostgreSQL: {exc}"
                    continue
                ours = pg.database()
                theirs = pg.database().replace("postgresql+psycopg://", "postgresql+psycopg://")
            db.upgrade(ours)
            if not args.json:
                print(f"{kind}: amoeba, {args.clients} clients, {args.seconds:g}s ...", file=sys.stderr)
            db_pid = _postmaster_pid(pg) if kind == "postgresql" else None
            doc["amoeba"][kind] = bench_amoeba(ours, args.clients, args.seconds, args.mode, args.threads, db_pid)
            if not args.skip_optuna:
                if not args.json:
                    print(f"{kind}: optuna, {args.clients} processes, {args.seconds:g}s ...", file=sys.stderr)
                doc["optuna"][kind] = bench_optuna(theirs, args.clients, args.seconds, db_pid)
                peer = doc["optuna"][kind]["trials_per_s"]
                doc["ratio"][kind] = round(doc["amoeba"][kind]["evals_per_s"] / peer, 1) if peer else None
    finally:
        if pg is not None:
            pg.close()
    doc["load_average"]["end"] = _load()
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        for kind, ours_doc in doc["amoeba"].items():
            line = (f"{kind}: amoeba {ours_doc['evals_per_s']} evals/s (p50 {ours_doc['lease_p50_ms']} ms, "
                    f"p99 {ours_doc['lease_p99_ms']} ms)")
            line += f", CPU ms/eval {ours_doc['cpu_ms_per_eval']}"
            if kind in doc["optuna"]:
                line += (f"; optuna {doc['optuna'][kind]['trials_per_s']} trials/s, CPU ms/trial "
                         f"{doc['optuna'][kind]['cpu_ms_per_trial']}; ratio {doc['ratio'][kind]}x")
            print(line)
        for kind, reason in doc["skipped"].items():
            print(f"{kind}: skipped ({reason})")
        print(f"load average {doc['load_average']['start']} at the start, {doc['load_average']['end']} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
