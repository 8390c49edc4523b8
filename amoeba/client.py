"""``amoeba.Client``: drive Amoeba from Python: create experiments, run an ask/tell loop of trials, read status."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from domain import Experiment, Individual
from domain.status import StatusSnapshot
from protos.client import ClientTLS, OrchestratorClient
from worker.loop import Backoff, Worker, WorkerConfig
from worker.trial import Trial


class Client:
    """A connection to an orchestrator (``amoeba server`` or ``amoeba up``) at ``address`` (HOST:PORT).

    ``token`` is the server's shared secret; ``tls_ca`` (and ``tls_cert``/``tls_key`` for mutual TLS) are
    PEM file paths. Every method raises an ``amoeba.AmoebaError`` subclass on failure: ``Unavailable``
    when the server cannot be reached, ``NotFound``, ``InvalidArgument``, ``AlreadyExists`` ... otherwise.
    Use it as a context manager, or call ``close``.
    """

    def __init__(self, address: str, token: str | None = None, *, tls_ca: str | Path | None = None,
                 tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
                 tls_server_name: str | None = None, timeout_s: float = 30.0) -> None:
        tls = None
        if tls_ca is not None or tls_cert is not None or tls_key is not None:
            tls = ClientTLS.from_files(tls_ca, tls_cert, tls_key, tls_server_name)
        self._client = OrchestratorClient(address, token=token, tls=tls, rpc_timeout_s=timeout_s)
        self.address = address

    # --- experiments ---------------------------------------------------------------------------------

    def create_experiment(self, config: str | Path | Mapping[str, Any], *, name: str | None = None) -> str:
        """Create an experiment from a config file (YAML/JSON), a shipped config name (``tiny``) or a mapping
        with the same keys; returns its name. ``name`` overrides the config's."""
        from configs import load_config
        from orchestrator.config import parse_spec

        data = dict(config) if isinstance(config, Mapping) else load_config(config)
        return self._client.create_experiment(parse_spec(data, name=name)).spec.name

    def experiments(self) -> list[Experiment]:
        """Every experiment the server holds, oldest first."""
        return self._client.list_experiments()

    def experiment(self, name: str) -> Experiment:
        return self._client.get_experiment(name)

    def pause(self, name: str, reason: str = "") -> Experiment:
        """Stop leasing new work of ``name`` (running leases finish); ``resume`` undoes it."""
        return self._client.pause(name, reason)

    def resume(self, name: str) -> Experiment:
        """Lease work of a paused experiment again (after the cause of a circuit-breaker pause is fixed)."""
        return self._client.resume(name)

    def status(self, name: str) -> StatusSnapshot:
        """The status document of an experiment (the README's schema: ``best``, ``population``, ``top``, ...)."""
        return self._client.status(name)

    def individuals(self, name: str, state: str | None = None, page_size: int = 1000) -> Iterator[Individual]:
        """Every individual of an experiment by proposal number (optionally only those in ``state``)."""
        token = ""
        while True:
            page = self._client.list_individuals(name, page_size, token, state)
            yield from page.individuals
            token = page.next_page_token
            if not token:
                return

    # --- trials --------------------------------------------------------------------------------------

    def trials(self, experiment: str, worker_id: str | None = None, *, max_trials: int | None = None,
               give_up_after_s: float = 60.0) -> Iterator[Trial]:
        """Lease trials of ``experiment`` until it is done (or ``max_trials`` were settled).

        Report each with ``trial.report(accuracy=...)`` or ``trial.fail(reason)``; heartbeats keep its lease
        alive from a background thread meanwhile. A trial left unsettled (``break``, an exception) is handed
        back at once, so another worker takes it. ``worker_id`` names this loop in ``amoeba status``.
        """
        config = WorkerConfig(experiment=experiment, max_evaluations=max_trials, worker_id=worker_id or "",
                              backoff=Backoff(give_up_after_s=give_up_after_s))
        loop = Worker(self._client, None, config, evaluator_name="python")
        trials = loop.trials()
        try:
            yield from trials
        finally:
            trials.close()

    # --- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
