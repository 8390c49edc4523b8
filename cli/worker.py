"""``amoeba worker``: lease, evaluate and report until the experiment ends (SIGTERM releases the lease)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer

from cli.errors import UserError
from cli.remote import (
    ServerOpt,
    TlsCaOpt,
    TlsCertOpt,
    TlsKeyOpt,
    TlsNameOpt,
    TokenOpt,
    make_client,
    remote_error_line,
)
from domain.errors import AmoebaError


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def _sleep_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    from tables.benchmark import parse_sleep

    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [float(p) for p in parts]
        return parse_sleep(numbers[0] if len(numbers) == 1 else numbers)
    except ValueError as exc:
        raise UserError(f"--sleep must be SECONDS or LOW,HIGH: {exc}") from None


def follow_parent(pid: int, on_gone: Any, poll_s: float = 0.5) -> None:
    """Stop the worker when process ``pid`` (the ``amoeba up`` that started it) is gone, however it died.

    On Linux the kernel sends SIGTERM at once (``PR_SET_PDEATHSIG``); everywhere a thread also notices the
    worker being handed to another parent and calls ``on_gone``.
    """
    import contextlib
    import ctypes
    import threading

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the thread below is enough
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1

    def watch() -> None:
        import time

        while os.getppid() == pid:
            time.sleep(poll_s)
        logging.getLogger(__name__).warning("the process that started this worker (pid %d) is gone: stopping", pid)
        on_gone()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker(
    server: ServerOpt = "127.0.0.1:50051",
    experiment: Annotated[str | None, typer.Option(help="work on this experiment only (default: any running one, moving on as each ends)")] = None,
    evaluator: Annotated[str, typer.Option(envvar="AMOEBA_EVALUATOR", help="table (tabular look-up), train (Flax) or MODULE:FUNCTION (your function gets a Trial and returns {'accuracy': ...})")] = "table",
    data_dir: Annotated[str | None, typer.Option(envvar="AMOEBA_DATA_DIR", help="dataset folder (train evaluator)")] = None,
    table: Annotated[str | None, typer.Option(help="NB201 table CSV (table evaluator; default: the shipped one)")] = None,
    sleep: Annotated[str | None, typer.Option(help="table evaluator: pretend to train SECONDS or LOW,HIGH seconds each")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="without --experiment: wait for new experiments instead of exiting when none is running")] = False,
    max_evaluations: Annotated[int | None, typer.Option(help="exit after this many evaluations")] = None,
    give_up_after: Annotated[float, typer.Option(help="exit when the server stays unreachable this many seconds")] = 60.0,
    prefetch: Annotated[str, typer.Option(envvar="AMOEBA_PREFETCH", help="lease the next child while one trains and compile it meanwhile: on, off, or auto (on with a GPU or TPU)")] = "auto",
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
    tls_server_name: TlsNameOpt = None,
    worker_id: Annotated[str | None, typer.Option(help="stable id (default: host-pid-random)")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON at exit")] = False,
) -> None:
    """Evaluate individuals for the orchestrator at --server until the work is done or SIGTERM."""
    from worker.evaluators import build_evaluator, fatal_errors
    from worker.loop import Backoff, ServerUnreachable, Worker, WorkerConfig

    if wait and experiment:
        raise UserError("--wait is for workers without --experiment (a finished experiment stays finished)")
    if max_evaluations is not None and max_evaluations < 1:
        raise UserError("--max-evaluations must be >= 1")
    if give_up_after <= 0:
        raise UserError("--give-up-after must be > 0")
    if prefetch not in ("auto", "on", "off"):
        raise UserError(f"--prefetch must be auto, on or off, got {prefetch!r}")
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise UserError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options: dict[str, Any] = {}
    if evaluator == "table":
        options = {"table": table, "sleep_s": _sleep_range(sleep)}
    elif table or sleep:
        raise UserError("--table and --sleep are options of the table evaluator")
    chosen = build_evaluator(evaluator, data_dir=data_dir, **options)
    client = make_client(server, token, tls_ca, tls_cert, tls_key, tls_server_name)
    config = WorkerConfig(
        experiment=experiment, max_evaluations=max_evaluations, worker_id=worker_id or "",
        backoff=Backoff(give_up_after_s=give_up_after), wait_for_work=wait,
        # auto: the evaluator says (the train evaluator: with an accelerator, whose host cores are idle).
        prefetch=prefetch == "on" or (prefetch == "auto" and bool(getattr(chosen, "prefers_prefetch", False))),
    )
    loop = Worker(client, chosen, config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: loop.request_stop())
    parent = os.environ.get("AMOEBA_PARENT_PID", "")
    if parent.isdigit():
        follow_parent(int(parent), loop.request_stop)
    try:
        summary = loop.run()
    except ServerUnreachable as exc:
        raise UserError(str(exc)) from None
    except fatal_errors(evaluator) as exc:
        raise UserError(str(exc)) from None
    except AmoebaError as exc:
        raise UserError(remote_error_line(exc, server)) from None
    finally:
        client.close()
    if as_json:
        print(json.dumps(summary.to_json(), sort_keys=True))
    else:
        print(
            f"worker {summary.worker_id}: {summary.evaluated} evaluated, {summary.failed} failed, "
            f"{summary.stopped} stopped early, {summary.dropped} dropped, {summary.released} released "
            f"({summary.exit_reason})",
            file=sys.stderr,
        )
