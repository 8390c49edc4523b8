"""A response the server cannot send (larger than its message limit) is logged on the server and answered
with RESOURCE_EXHAUSTED naming the sizes, not dropped in silence."""

from __future__ import annotations

import logging

import pytest
from builders import spec

from domain import Unavailable, WorkerInfo
from orchestrator.server import ServerConfig, start
from orchestrator.service import open_service
from protos.client import OrchestratorClient

pytestmark = pytest.mark.grpc


def test_an_oversized_response_is_logged_and_refused_with_its_size(caplog: pytest.LogCaptureFixture) -> None:
    service = open_service("memory://")
    # Training settings travel in every lease: 20 KB of them against a 16 KiB server limit.
    service.create_experiment(spec("big", training={"notes": "x" * 20_000}))
    server = start(service, ServerConfig(port=0, max_message_bytes=16 * 1024))
    client = OrchestratorClient(server.address)
    try:
        with (caplog.at_level(logging.ERROR, logger="orchestrator.server"),
              pytest.raises(Unavailable, match=r"LeaseWork response is 2\d,\d{3} bytes, over the server's limit of 16,384")):
            client.lease(WorkerInfo("w", "h", "table"), "big")
        assert any("LeaseWork: the response is" in r.getMessage() and "not sent" in r.getMessage()
                   for r in caplog.records)
        # Small answers still go through (the status document carries no spec); the spec itself cannot.
        assert client.status("big")["state"] == "running"
        with pytest.raises(Unavailable, match="GetExperiment response is"):
            client.get_experiment("big")
    finally:
        client.close()
        server.stop()
        service.store.close()
