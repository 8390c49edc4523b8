"""The heartbeat thread while the server is away: capped backoff and one log line, not a beat per 100 ms."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from domain import FailedPrecondition, Unavailable
from tests.builders import lease
from worker.loop import _Heartbeat

pytestmark = pytest.mark.grpc  # the worker loop's heartbeat thread, in real time


class _Down:
    """A client whose server does not answer (then answers that the lease is gone)."""

    def __init__(self, lost_after: int | None = None) -> None:
        self.calls = 0
        self.lost_after = lost_after

    def heartbeat(self, individual_id: int, token: str, worker_id: str) -> float:
        self.calls += 1
        if self.lost_after is not None and self.calls > self.lost_after:
            raise FailedPrecondition("the lease on individual 1 expired")
        raise Unavailable("failed to connect to all addresses")


def test_an_unreachable_server_is_retried_with_backoff_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    client = _Down()
    held = lease()
    held = type(held)(**{**{f: getattr(held, f) for f in held.__dataclass_fields__}, "deadline": time.time() + 0.6})
    caplog.set_level(logging.INFO, logger="worker.loop")
    beat = _Heartbeat(client, held, "w", threading.Event())  # type: ignore[arg-type]
    time.sleep(3.0)
    beat.close()
    # With the old halving of the deadline estimate this was about 30 calls in 3 s; a slower machine only
    # makes fewer calls, never more.
    assert 1 <= client.calls <= 6
    assert sum("heartbeat failed" in r.getMessage() for r in caplog.records) == 1


def test_the_server_saying_the_lease_is_gone_ends_the_heartbeat() -> None:
    client = _Down(lost_after=1)
    held = lease()
    held = type(held)(**{**{f: getattr(held, f) for f in held.__dataclass_fields__}, "deadline": time.time() + 0.3})
    cancel = threading.Event()
    beat = _Heartbeat(client, held, "w", cancel)  # type: ignore[arg-type]
    assert beat.lost.wait(10.0) and cancel.is_set()
    beat.close()
