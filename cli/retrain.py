"""``amoeba retrain``: final training of a search's best genomes (or a genome file) at full size, scored on the
test split, as a "final" experiment that the same workers run.

``--json`` prints ``{"experiment", "individuals": [{"source_seq", "fingerprint", "test_accuracy", "params",
"latency_ms", "artifact"}]}`` once the work is done (``--no-wait``: ``{"experiment"}`` at once).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import UserError
from cli.remote import TlsCaOpt, TlsCertOpt, TlsKeyOpt, TlsNameOpt, TokenOpt, make_client, remote
from domain.errors import AmoebaError

DEFAULT_RESULTS = "amoeba-results"


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain)


def retrain(
    db_url: Annotated[str | None, typer.Option("--db", help="database URL or SQLite file of the search (the final experiment is created there)")] = None,
    server: Annotated[str | None, typer.Option("--server", help="a running orchestrator HOST:PORT: only create the work for its workers")] = None,
    experiment: Annotated[str | None, typer.Option(help="the search whose best genomes to retrain")] = None,
    top: Annotated[int, typer.Option(help="how many of the best distinct genomes to retrain")] = 1,
    genome: Annotated[str | None, typer.Option(help="retrain this genome file (JSON) instead of a search's best")] = None,
    preset: Annotated[str | None, typer.Option(help="final-training preset (amoebanet-final, amoebanet-imagenet-final, tiny-final, ...); default: the space's")] = None,
    name: Annotated[str | None, typer.Option(help="name of the final experiment (default: SOURCE-final)")] = None,
    data_dir: Annotated[str | None, typer.Option(envvar="AMOEBA_DATA_DIR", help="folder holding the dataset (local runs)")] = None,
    workers: Annotated[int | None, typer.Option(help="local worker processes (default: one per accelerator, one when none)")] = None,
    evaluator: Annotated[str, typer.Option(help="train, or MODULE:FUNCTION (your own training code)")] = "train",
    artifacts: Annotated[str | None, typer.Option(help="artifact store for the final weights (local runs; default: amoeba-artifacts/ beside the database)")] = None,
    results: Annotated[str, typer.Option(help="folder for worker logs and exports (local runs)")] = DEFAULT_RESULTS,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="create the work and return with the experiment's name")] = False,
    interval: Annotated[float, typer.Option(help="seconds between status refreshes")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the final models as JSON when done")] = False,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
) -> None:
    """Train the best genomes of an experiment again at full size on the whole training set; report test accuracy."""
    if (server is None) == (db_url is None):
        raise UserError("give either --db URL (run here) or --server HOST:PORT (a running cluster)")
    if genome is None and not experiment:
        raise UserError("give --experiment NAME (retrain its best) or --genome FILE")
    if interval <= 0:
        raise UserError("--interval must be > 0")
    if workers is not None and not 1 <= workers <= 256:
        raise UserError("--workers must be between 1 and 256")
    if server is not None:
        client = make_client(server, token, tls_ca, tls_cert, tls_key, tls_server_name)
        try:
            spec = _plan(lambda n: remote(server, lambda: client.get_experiment(n)).spec,
                         lambda n: _pages(server, client, n),
                         lambda n: _exists(lambda: client.get_experiment(n)),
                         experiment, top, genome, preset, name)
            remote(server, lambda: client.create_experiment(spec))
            if no_wait:
                _print_started(spec.name, as_json)
                return
            _wait(lambda: dict(remote(server, lambda: client.status(spec.name))), interval, spec.name)
            rows = _pages(server, client, spec.name)
        finally:
            client.close()
        _print_result(spec, rows, as_json)
        return
    assert db_url is not None
    _local(db_url, experiment, top, genome, preset, name, data_dir, workers, evaluator, artifacts, results,
           no_wait, interval, as_json)


def _pages(server: str, client: Any, name: str) -> list[Any]:
    """Every completed individual of ``name`` on the server, page by page."""
    rows: list[Any] = []
    token = ""
    while True:
        def fetch(after: str = token) -> Any:
            return client.list_individuals(name, 10_000, after, "completed")

        page = remote(server, fetch)
        rows.extend(page.individuals)
        token = page.next_page_token
        if not token:
            return rows


def _exists(call: Any) -> bool:
    from domain import NotFound

    try:
        call()
    except NotFound:
        return False
    return True


def _plan(get_spec: Any, completed: Any, exists: Any, experiment: str | None, top: int, genome_file: str | None,
          preset: str | None, name: str | None) -> Any:
    """The final experiment's spec from the source's best (or the genome file): a domain error is one line."""
    from orchestrator.final import Pick, final_spec, top_distinct

    try:
        if genome_file is not None:
            import spaces

            path = Path(genome_file)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise UserError(f"cannot read the genome file {genome_file}: {exc}") from None
            parsed = spaces.parse_genome(data)
            from genome.base import canonical_json

            picks = [Pick(path.name, None, parsed.fingerprint, canonical_json(parsed.to_json()))]
            space, objective, seed, base = parsed.space, None, 0, path.stem
        else:
            assert experiment is not None
            source = get_spec(experiment)
            best = top_distinct(completed(experiment), top)
            picks = [Pick(experiment, i.proposal_seq, i.fingerprint, i.genome_json) for i in best]
            space, objective, seed, base = source.space, source.objective, source.seed, experiment
        final_name = name or _free_name(f"{base}-final", exists)
        spec = final_spec(space, picks, name=final_name, preset=preset, objective=objective, seed=seed)
        # Checked here, not by the workers: a preset no worker knows would fail every final training.
        from worker.training.presets import resolve_training

        resolve_training(spec.training)
        return spec
    except AmoebaError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(str(exc)) from None


def _free_name(base: str, exists: Any) -> str:
    base = base[:190]
    if not exists(base):
        return base
    for k in range(2, 1000):
        if not exists(f"{base}-{k}"):
            return f"{base}-{k}"
    raise UserError(f"pass --name: {base} and its numbered successors are taken")


def _local(db_url: str, experiment: str | None, top: int, genome: str | None, preset: str | None,
           name: str | None, data_dir: str | None, workers: int | None, evaluator: str, artifacts: str | None,
           results: str, no_wait: bool, interval: float, as_json: bool) -> None:
    from rich.console import Console

    from cli.up import Plan, _check_evaluator, _run, open_local

    _check_evaluator(evaluator)
    if data_dir and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    service = open_local(db_url, artifacts)
    try:
        def completed(n: str) -> list[Any]:
            rows: list[Any] = []
            token = ""
            while True:
                page = service.list_individuals(n, 10_000, token, "completed")
                rows.extend(page.individuals)
                token = page.next_page_token
                if not token:
                    return rows

        spec = _plan(lambda n: service.get_experiment(n).spec, completed,
                     lambda n: _exists(lambda: service.get_experiment(n)), experiment, top, genome, preset, name)
        if no_wait:
            service.create_experiment(spec)
            _print_started(spec.name, as_json)
            return
        console = Console(stderr=True)
        _run(service, Plan(spec, evaluator, None), workers, data_dir, db_url, Path(results), interval, True, True,
             console, console, quiet=True)
        _print_result(spec, completed(spec.name), as_json)
    finally:
        service.store.close()


def _wait(status: Any, interval: float, name: str) -> None:
    """Until the final experiment is done (its workers are the cluster's); a pause is one line."""
    while True:
        doc = status()
        if doc.get("state") == "done":
            return
        if doc.get("state") == "paused":
            raise UserError(f"{name} {doc.get('paused_reason')}")
        print(f"amoeba retrain: {name} {doc.get('completed')}/{doc.get('target')} trained", file=sys.stderr, flush=True)
        time.sleep(interval)


def _print_started(name: str, as_json: bool) -> None:
    print(json.dumps({"experiment": name}) if as_json else f"created {name}: its work waits for workers "
          f"(amoeba status --experiment {name})")


def _print_result(spec: Any, rows: list[Any], as_json: bool) -> None:
    from orchestrator.final import source_of

    sources = source_of(spec)
    models = []
    for ind in sorted(rows, key=lambda i: i.proposal_seq):
        label = sources.get(ind.fingerprint, "")
        seq = label.rpartition("#")[2]
        models.append({
            "source_seq": int(seq) if seq.isdigit() else None, "source": label, "fingerprint": ind.fingerprint,
            "test_accuracy": ind.accuracy, "params": ind.params, "mult_adds": ind.mult_adds,
            "latency_ms": ind.latency_ms, "artifact": ind.artifact.uri if ind.artifact is not None else None,
            "sha256": ind.artifact.sha256 if ind.artifact is not None else None,
        })
    if as_json:
        print(json.dumps({"experiment": spec.name, "individuals": models}, indent=2))
        return
    print(f"{spec.name}: {len(models)} final model(s) ({spec.training.get('preset')}, scored on the test split)")
    for m in models:
        acc = "-" if m["test_accuracy"] is None else f"{m['test_accuracy']:.4f}"
        lat = "-" if m["latency_ms"] is None else f"{m['latency_ms']:.3g} ms"
        print(f"  {m['source'] or m['fingerprint']}: test accuracy {acc}, {m['params'] or 0:,} parameters, "
              f"latency {lat}, weights {m['artifact'] or '(none kept)'}")
