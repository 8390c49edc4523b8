"""``amoeba up``: the main job on one machine: SQLite, an in-process orchestrator, local workers, live status.

The orchestrator runs in this process (a background gRPC server on a free loopback port with a random
token); each worker is an ``amoeba worker`` subprocess in this process group, so Ctrl-C on a terminal
reaches all of them at once: workers release their leases, then the server stops. Running the same
command again resumes the experiment of the same name.

``--json`` prints one summary object on stdout at the end (progress then goes to stderr):
``{"experiment", "state", "completed", "failed", "target", "evaluator", "workers", "resumed",
"fallback", "elapsed_seconds", "database", "results_dir", "exports", "best"}`` where ``best`` is
null or ``{"proposal_seq", "fingerprint", "fitness", "accuracy", "latency_ms", "summary", "genome"}``,
``fallback`` is null or the one-line reason the table experiment ran instead of training, and
``exports`` maps artifact names (``history_csv``, ``progress_png``, ...) to paths.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import UserError
from domain.errors import AmoebaError

DEFAULT_DB = "sqlite:///amoeba.db"
DEFAULT_RESULTS = "amoeba-results"
#: Where ``amoeba up`` fetches CIFAR-10 from (a mirror, or a closed port to rehearse the offline path).
CIFAR_URL_ENV = "AMOEBA_CIFAR10_URL"
#: Seconds a probe of the CIFAR-10 download may take before we call the machine offline.
PROBE_TIMEOUT_S = 5.0
#: Seconds workers get to release their leases after a stop request before they are killed.
STOP_GRACE_S = 20.0
#: The experiment ``amoeba up`` falls back to offline: a tabular benchmark needs no data.
TABLE_CONFIG = "nb201-table"
BUILTIN_EVALUATORS = ("train", "table")
#: Set for the workers `amoeba up` starts: the process they must not outlive.
PARENT_PID_ENV = "AMOEBA_PARENT_PID"


def register(app: typer.Typer) -> None:
    app.command("up")(up)


# --- what to run -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The experiment to run and how: its validated spec, the evaluator, and why we fell back, if we did."""

    spec: Any  # orchestrator.domain.ExperimentSpec
    evaluator: str
    fallback: str | None


def _load_spec(config: str, name: str | None, evaluations: int | None) -> Any:
    from configs import load_config
    from orchestrator.config import parse_spec

    try:
        data = load_config(config)
        if evaluations is not None:
            data = {k: v for k, v in data.items() if k not in ("evaluations", "C")} | {"evaluations": evaluations}
        return parse_spec(data, name=name)
    except AmoebaError as exc:
        raise UserError(f"config {config}: {exc}") from None


def _check_evaluator(evaluator: str | None) -> None:
    if evaluator is not None and evaluator not in BUILTIN_EVALUATORS and ":" not in evaluator:
        raise UserError(f"--evaluator must be train, table or MODULE:FUNCTION, got {evaluator!r}")


def _space(name: str) -> Any:
    import spaces

    try:
        return spaces.get(name)
    except AmoebaError as exc:
        raise UserError(f"--space: {exc}") from None


def _default_space() -> str:
    import spaces

    return spaces.DEFAULT_SPACE


def _needs_table(space_name: str, what: str) -> None:
    """The table evaluator looks genomes up in their space's tabular benchmark: refuse spaces without one."""
    if _space(space_name).table is None:
        import spaces

        with_table = ", ".join(s.name for s in spaces.all_spaces() if s.table is not None)
        raise UserError(f"{what} searches the {space_name} space, which has no tabular benchmark for the table "
                        f"evaluator (spaces with one: {with_table}); use --evaluator train")


def _unreachable(url: str, timeout_s: float) -> str | None:
    """Why the download server cannot be reached (a quick TCP connect), or None when it can."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None  # file:// and the like: the download itself will tell
    try:
        with socket.create_connection((parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)),
                                      timeout=timeout_s):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


def cifar_available(data_dir: str | None, url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when CIFAR-10 is in ``data_dir`` or the cache, or was just downloaded into the cache;
    otherwise the reason it is not (one line)."""
    from worker.training.data_cifar import ARCHIVE_NAME, default_cifar_cache, locate_cifar10
    from worker.training.errors import DataError, DatasetUnavailable

    try:
        locate_cifar10(data_dir, download=False, progress=False)
        return None
    except DatasetUnavailable:
        pass
    if data_dir:
        return f"CIFAR-10 is not in {data_dir}"
    problem = _unreachable(url, timeout_s)
    if problem is None:
        # Reachable: say what is about to take a while (a progress bar follows on a terminal).
        print(f"amoeba up: downloading {ARCHIVE_NAME} (about 163 MB) from {url} into {default_cifar_cache()}",
              file=sys.stderr, flush=True)
        try:
            locate_cifar10(None, url=url, download=True, progress=sys.stderr.isatty(), timeout_s=30.0)
            return None
        except (DatasetUnavailable, DataError) as exc:
            # The loader's message ends with advice for workers; keep only the cause for our one line.
            cause = re.search(r"failed \((.*)\)", str(exc))
            problem = cause.group(1) if cause else str(exc)
    return f"CIFAR-10 is not cached and cannot be downloaded from {url} ({problem})"


def _dataset(spec: Any) -> str:
    """The dataset the experiment trains on (its preset's unless overridden); a bad setting is one line."""
    from worker.training.presets import TrainingConfigError, resolve_training

    try:
        return str(resolve_training(spec.training).dataset)
    except TrainingConfigError as exc:
        raise UserError(f"experiment {spec.name}: {exc}") from None


def plan(config: str | None, space: str | None, evaluator: str | None, data_dir: str | None,
         evaluations: int | None, name: str | None, cifar_url: str) -> Plan:
    """Pick the config and evaluator; with pure defaults and no CIFAR-10, the NB201 table experiment."""
    _check_evaluator(evaluator)
    if space is not None:
        _space(space)
    if evaluator == "table" and space is not None:
        _needs_table(space, "--space")
    if evaluator == "table" and data_dir:
        raise UserError("--data-dir is an option of the train evaluator")
    if config is not None:
        spec = _load_spec(config, name, evaluations)
        if space is not None and space != spec.space:
            raise UserError(f"config {config} searches the {spec.space} space, not {space} (drop --space or pick another config)")
        chosen = evaluator or ("table" if "table" in spec.training else "train")
        if chosen == "table":
            _needs_table(spec.space, f"config {config}")
        if chosen == "train":
            missing = cifar_available(data_dir, cifar_url) if _dataset(spec) == "cifar10" else None
            if missing:
                raise UserError(f"{missing}: put cifar-10-python.tar.gz in --data-dir DIR or the cache")
        return Plan(spec, chosen, None)
    if evaluator == "table":
        configs = _space(space).configs if space is not None else {}
        return Plan(_load_spec(configs.get("table", TABLE_CONFIG), name, evaluations), "table", None)
    default = _space(space or _default_space()).configs.get("train")
    if default is None:
        raise UserError(f"the {space} space ships no training config: pass --config FILE")
    if evaluator is not None and evaluator not in BUILTIN_EVALUATORS:
        return Plan(_load_spec(default, name, evaluations), evaluator, None)  # the user's function trains
    missing = cifar_available(data_dir, cifar_url)
    if missing is None:
        return Plan(_load_spec(default, name, evaluations), "train", None)
    if evaluator == "train" or data_dir or space is not None:
        raise UserError(f"{missing}: put cifar-10-python.tar.gz in --data-dir DIR or the cache")
    return Plan(_load_spec(TABLE_CONFIG, name, evaluations), "table", missing)


def local_accelerators() -> list[dict[str, str]]:
    """One environment per local accelerator for a worker to see only that one; [] when there is none.

    Counted from device files (no JAX import here: the orchestrator must not pay for it). GPUs honour
    ``CUDA_VISIBLE_DEVICES``.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    else:
        gpus = sorted((p.name[len("nvidia"):] for p in Path("/dev").glob("nvidia[0-9]*")), key=int)
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus]
    chips = sorted(Path("/dev").glob("accel[0-9]*"))
    return [
        {"TPU_VISIBLE_CHIPS": str(i), "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_BOUNDS": "1,1,1",
         "TPU_PROCESS_PORT": str(8476 + i), "TPU_PROCESS_ADDRESSES": f"localhost:{8476 + i}"}
        for i in range(len(chips))
    ]


def shared_accelerators(accelerators: list[dict[str, str]], per_accelerator: int) -> list[dict[str, str]]:
    """``per_accelerator`` worker environments per GPU, each held to an equal share of its memory.

    JAX preallocates a fraction of GPU memory per process (``XLA_PYTHON_CLIENT_MEM_FRACTION``, default
    0.75): K workers on one GPU get 0.9 / K each, so together they leave the driver its headroom. A TPU
    chip serves one process only, so TPUs are never shared.
    """
    if per_accelerator == 1:
        return accelerators
    if any("TPU_VISIBLE_CHIPS" in a for a in accelerators):
        raise UserError("--workers-per-accelerator shares GPUs; a TPU chip serves one process")
    share = f"{0.9 / per_accelerator:.3f}"
    return [{**a, "XLA_PYTHON_CLIENT_MEM_FRACTION": share} for a in accelerators for _ in range(per_accelerator)]


# --- running it --------------------------------------------------------------------------------------


#: glibc settings that keep freed buffers for reuse: a training step's large activations otherwise come
#: from fresh mmaps whose pages fault in on every step (measured: 11.6 -> 20.9 images/s for the
#: amoebanet-search child on CPU, benchmarks/train_throughput.py --malloc-tuning). Read by glibc only at
#: process start, so they are set for the worker processes; a user's own values win.
TRAINING_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "68719476736",
    "MALLOC_TOP_PAD_": "536870912",
    "MALLOC_ARENA_MAX": "1",
}


class _Workers:
    """The worker subprocesses: started with the server's address and token, stopped with SIGTERM."""

    def __init__(self, server: str, token: str, experiment: str, evaluator: str, data_dir: str | None,
                 envs: list[dict[str, str]], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.logs = [log_dir / f"worker-{i}.log" for i in range(len(envs))]
        self.procs: list[subprocess.Popen[bytes]] = []
        for i, extra in enumerate(envs):
            cmd = [sys.executable, "-m", "cli.main", "worker", "--server", server, "--experiment", experiment,
                   "--evaluator", evaluator, "--worker-id", f"up-{os.getpid()}-{i}", "--log-level", "WARNING",
                   "--give-up-after", "60"]
            if data_dir:
                cmd += ["--data-dir", data_dir]
            # The token goes through the environment: argv is visible to every user of the machine.
            tuning = TRAINING_MALLOC_ENV if evaluator == "train" else {}
            env = {**tuning, **os.environ, **extra, "AMOEBA_TOKEN": token, "PYTHONUNBUFFERED": "1",
                   # The worker dies with this process, even when it is SIGKILLed (cli.worker watches it).
                   PARENT_PID_ENV: str(os.getpid())}
            with self.logs[i].open("ab") as log:
                self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env))

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.procs)

    def stop(self, grace_s: float) -> None:
        """SIGTERM (a worker then releases its lease and exits), SIGKILL whoever is left after ``grace_s``."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        self.wait(grace_s)

    def wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def last_error(self) -> str:
        """What made the workers exit, for a one-line error: a signal that killed one, or a log's last line."""
        for proc, log in zip(self.procs, self.logs, strict=True):
            code = proc.poll()
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                return f"worker {log.stem} was killed by {name} (log: {log})"
        for log in self.logs:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
            if lines:
                return f"{lines[-1].strip()} (log: {log})"
        return "the workers exited without a word (logs: " + ", ".join(str(log) for log in self.logs) + ")"


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    from db.engine import normalize_url

    u = make_url(normalize_url(url))
    return Path(u.database).resolve() if u.get_backend_name() == "sqlite" and u.database else None


def shown_database(url: str) -> str:
    """The database as printed and recorded: a SQLite file's absolute path, else the URL without its password
    (logs and terminals are shared; the user knows it)."""
    where = _sqlite_path(url)
    return str(where) if where is not None else _hide_password(url)


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    from db.engine import normalize_url

    return make_url(normalize_url(url)).render_as_string(hide_password=True)


def _existing_or_new(service: Any, spec: Any) -> tuple[Any, bool]:
    """The experiment of ``spec.name``: resumed when its stored config is the same, created when absent."""
    from domain import NotFound
    from orchestrator.config import spec_to_dict

    try:
        exp = service.get_experiment(spec.name)
    except NotFound:
        return service.create_experiment(spec), False
    stored, asked = spec_to_dict(exp.spec), spec_to_dict(spec)
    if stored != asked:
        diff = ", ".join(f"{k} {stored[k]!r} -> {asked[k]!r}" for k in stored if stored[k] != asked[k])
        raise UserError(f"experiment {spec.name!r} exists with another config ({diff}); "
                        f"resume it with the same options, or pass --name NEW")
    if exp.state == "paused":
        # Running the command again after fixing the cause is how one resumes on one machine.
        print(f"amoeba up: resuming {spec.name}, which was {exp.paused_reason}", file=sys.stderr, flush=True)
        exp = service.resume(spec.name)
    return exp, True


def _export(service: Any, name: str, out_dir: Path) -> dict[str, str]:
    from dataclasses import asdict

    from ui.export import export_experiment

    exp = service.get_experiment(name)
    records: list[dict[str, Any]] = []
    token = ""
    while True:
        page = service.list_individuals(name, 10_000, token, None)
        records.extend(asdict(i) for i in page.individuals)
        token = page.next_page_token
        if not token:
            break
    from cli.lineage import departures
    from orchestrator.replay import progress_curves
    from ui.derive import KILLING_ALGORITHMS

    gone = departures(service.store, name) if exp.spec.algorithm in KILLING_ALGORITHMS else None
    return export_experiment(records, out_dir, population_size=exp.spec.population_size,
                             algorithm=exp.spec.algorithm, created_at=exp.created_at, name=name,
                             curves=progress_curves(service.store, name), departures=gone)


def _summary(service: Any, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
    best = status.get("best")
    if not best:
        return None
    page = service.list_individuals(name, 1, str(int(best["proposal_seq"]) - 1), None)
    genome = json.loads(page.individuals[0].genome_json) if page.individuals else None
    return {k: best.get(k) for k in ("proposal_seq", "fingerprint", "fitness", "accuracy", "latency_ms", "summary")} | {
        "genome": genome}


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def up(
    config: Annotated[str | None, typer.Option(help="shipped config name (tiny, nb201-table, amoebanet-search, ...) or a YAML/JSON file")] = None,
    evaluations: Annotated[int | None, typer.Option(help="C: completed evaluations to run (overrides the config)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: one per local accelerator, one when none)")] = None,
    workers_per_accelerator: Annotated[int, typer.Option(help="workers sharing each GPU, each held to 1/K of its memory (small CIFAR children leave a large GPU mostly idle)")] = 1,
    space: Annotated[str | None, typer.Option(help="a search space (nasnet, nb201, ...): picks that space's default config")] = None,
    evaluator: Annotated[str | None, typer.Option(help="train (Flax on CIFAR-10), table (tabular look-up) or MODULE:FUNCTION (your own training code)")] = None,
    data_dir: Annotated[str | None, typer.Option(envvar="AMOEBA_DATA_DIR", help="folder holding cifar-10-python.tar.gz (default: the cache)")] = None,
    db_url: Annotated[str, typer.Option("--db", help="database URL or SQLite file (migrated automatically)")] = DEFAULT_DB,
    name: Annotated[str | None, typer.Option(help="experiment name (default: the config's); the same name resumes")] = None,
    artifacts: Annotated[str | None, typer.Option(help="artifact store for trained weights: a folder or s3://... (default: amoeba-artifacts/ beside the database; 'none': keep no weights)")] = None,
    results: Annotated[str, typer.Option(help="folder for worker logs and the final exports (a subfolder per experiment)")] = DEFAULT_RESULTS,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace results another database left in the experiment's results folder")] = False,
    interval: Annotated[float, typer.Option(help="seconds between status refreshes")] = 1.0,
    export: Annotated[bool, typer.Option("--export/--no-export", help="write the replay exports and plots when the experiment completes")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="progress on stderr, one JSON summary on stdout")] = False,
) -> None:
    """Run an experiment on this machine until it completes: database, orchestrator, workers, live status."""
    from rich.console import Console

    if evaluations is not None and evaluations < 1:
        raise UserError("--evaluations must be >= 1")
    if workers is not None and not 1 <= workers <= 256:
        raise UserError("--workers must be between 1 and 256")
    if not 1 <= workers_per_accelerator <= 16:
        raise UserError("--workers-per-accelerator must be between 1 and 16")
    if interval <= 0:
        raise UserError("--interval must be > 0")
    if data_dir and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    if Path(results).exists() and not Path(results).is_dir():
        raise UserError(f"--results {results} exists and is not a folder")
    console = Console(stderr=as_json)
    err = Console(stderr=True)
    service = open_local(db_url, artifacts)
    try:
        cifar_url = os.environ.get(CIFAR_URL_ENV) or _default_cifar_url()
        stored = _stored_spec(service, name) if config is None and space is None and evaluations is None else None
        if stored is not None:
            chosen = resume_plan(stored, evaluator, data_dir, cifar_url)
        else:
            chosen = plan(config, space, evaluator, data_dir, evaluations, name, cifar_url)
        if chosen.fallback:
            from worker.training.data_cifar import default_cifar_cache

            err.print(f"amoeba: {chosen.fallback}; running the NAS-Bench-201 table experiment instead (no training). "
                      f"To train for real: put cifar-10-python.tar.gz in {default_cifar_cache()} (or pass --data-dir DIR) "
                      f"and run `amoeba up --evaluator train`.", markup=False, highlight=False, soft_wrap=True)
        _run(service, chosen, workers, data_dir, db_url, Path(results), interval, export, as_json, console, err,
             overwrite, workers_per_accelerator)
    finally:
        service.store.close()


def open_local(db_url: str, artifacts: str | None) -> Any:
    """The service of a run on this machine: the database migrated to the head, the artifact store at
    ``artifacts`` (default: amoeba-artifacts/ beside the database; ``none``: keep no weights)."""
    from cli.artifacts import default_store, open_artifacts
    from db import upgrade
    from orchestrator.service import open_service

    store = open_artifacts(None if (artifacts or "").strip().lower() == "none" else artifacts or default_store(db_url))
    try:
        upgrade(db_url)
        return open_service(db_url, artifacts=store)
    except (AmoebaError, ValueError) as exc:
        raise UserError(f"cannot open database {db_url}: {exc}") from None


def _stored_spec(service: Any, name: str | None) -> Any:
    """The stored spec of experiment ``name`` (``amoeba up --name X`` continues X as it is), else None."""
    from domain import NotFound

    if not name:
        return None
    try:
        return service.get_experiment(name).spec
    except NotFound:
        return None


def resume_plan(spec: Any, evaluator: str | None, data_dir: str | None, cifar_url: str) -> Plan:
    """Run a stored experiment as it is (a fork, one made by `experiment create`): evaluator from its training."""
    _check_evaluator(evaluator)
    chosen = evaluator or ("table" if "table" in spec.training else "train")
    if chosen == "table":
        _needs_table(spec.space, f"experiment {spec.name}")
    if chosen == "train" and _dataset(spec) == "cifar10":
        missing = cifar_available(data_dir, cifar_url)
        if missing:
            raise UserError(f"{missing}: put cifar-10-python.tar.gz in --data-dir DIR or the cache")
    return Plan(spec, chosen, None)


def _default_cifar_url() -> str:
    from worker.training.data_cifar import CIFAR10_URL

    return CIFAR10_URL


def _run(service: Any, chosen: Plan, n_workers: int | None, data_dir: str | None, db_url: str, results: Path,
         interval: float, export: bool, as_json: bool, console: Any, err: Any, overwrite: bool = False,
         per_accelerator: int = 1, quiet: bool = False) -> dict[str, Any]:
    """Run ``chosen`` to its end on this machine (server, workers, live view); the summary document, printed
    unless ``quiet`` (a command with a summary of its own, such as ``amoeba retrain``)."""
    from orchestrator.server import ServerConfig, start
    from ui.export import claim_folder
    from ui.live import finished, follow

    spec = chosen.spec
    started = time.monotonic()
    shown_db = shown_database(db_url)
    out_dir = results / spec.name

    # Worker logs and exports of this experiment of this database only: a same-named run elsewhere keeps its own.
    claim_folder(out_dir, {"database": shown_db, "experiment": spec.name}, overwrite)
    exp, resumed = _existing_or_new(service, spec)
    verb = "resuming" if resumed else "created"
    err.print(f"amoeba up: {verb} experiment {spec.name} ({spec.space}, {spec.algorithm}, P={spec.population_size}, "
              f"S={spec.sample_size}, C={spec.evaluations}, evaluator {chosen.evaluator}) in {shown_db}",
              markup=False, highlight=False, soft_wrap=True)
    envs: list[dict[str, str]] = []
    if exp.state != "done":
        accel = shared_accelerators(local_accelerators(), per_accelerator) if chosen.evaluator == "train" else []
        count = n_workers or max(1, len(accel))
        # More workers than accelerators share them round-robin; with none, every worker uses the CPU.
        envs = [accel[i % len(accel)] if accel else {} for i in range(count)]
    token = secrets.token_hex(16)
    server = start(service, ServerConfig(host="127.0.0.1", port=0, token=token, grace_s=5.0)) if envs else None
    pool: _Workers | None = None
    interrupted = False
    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if server is not None:
            pool = _Workers(server.address, token, spec.name, chosen.evaluator, data_dir, envs, out_dir)
            err.print(f"orchestrator on {server.address}; {len(envs)} worker(s), logs in {out_dir}/worker-*.log",
                      markup=False, highlight=False, soft_wrap=True)

        def stop(doc: Any) -> bool:
            return finished(doc) or doc.get("state") == "paused" or (pool is not None and pool.alive() == 0)

        status = dict(follow(lambda: service.status(spec.name), console=console, interval=interval, stop=stop))
        if status.get("state") == "paused":
            raise UserError(f"{spec.name} {status['paused_reason']} (then run the same `amoeba up` again)")
        if not finished(status):
            assert pool is not None
            raise UserError(f"every worker exited before {spec.name} finished "
                            f"({status['completed']}/{status['target']}): {pool.last_error()}")
        if pool is not None:
            pool.wait(STOP_GRACE_S)  # they see the experiment is done and exit on their own
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Ignore a second Ctrl-C while the workers hand their leases back through the server.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if pool is not None:
                pool.stop(STOP_GRACE_S)
            if server is not None:
                server.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if interrupted:
        status = service.status(spec.name)
        err.print(f"amoeba up: stopped {spec.name} at {status['completed']}/{status['target']} evaluations; "
                  f"run the same command to resume", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    exports = _export(service, spec.name, out_dir) if export else {}
    best = _summary(service, spec.name, status)
    doc = {
        "experiment": spec.name, "state": status["state"], "completed": status["completed"],
        "failed": status["failed"], "target": status["target"], "evaluator": chosen.evaluator,
        "workers": len(envs), "resumed": resumed, "fallback": chosen.fallback,
        "elapsed_seconds": round(time.monotonic() - started, 3), "database": shown_db,
        "results_dir": str(out_dir), "exports": exports, "best": best,
    }
    if quiet:
        return doc
    if as_json:
        print(json.dumps(doc, sort_keys=True))
        return doc
    lines = [f"{spec.name} {status['state']}: {status['completed']}/{status['target']} evaluations, "
             f"{status['failed']} failed, {doc['elapsed_seconds']:.1f}s"]
    if best is not None:
        lines.append(f"best: proposal {best['proposal_seq']} ({best['fingerprint']}), fitness {_fmt(best['fitness'])}, "
                     f"accuracy {_fmt(best['accuracy'])}, latency {_fmt(best['latency_ms'])} ms")
        lines.append(f"  {best['summary']}")
    lines.append(f"results: database {shown_db} (experiment {spec.name})"
                 + (f"; exports in {out_dir}/ (history, lineage, population as CSV and JSON; progress.png, front.png)"
                    if exports else ""))
    lines.append(f"next: amoeba status --db {shown_db} --experiment {spec.name}; "
                 f"amoeba replay --db {shown_db} --experiment {spec.name} --verify")
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return doc


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    # SIGTERM stops `amoeba up` the way Ctrl-C does (and under the same clean-up).
    raise KeyboardInterrupt
