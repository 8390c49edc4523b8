"""``EventBatch``: the writes of one use case against one experiment row, with its typed events, flushed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from db.repository import EventRecord, ExperimentRecord, StoreTx
from domain import events as ev


@dataclass(slots=True)
class EventBatch:
    """Counter changes and events of one transaction on one experiment (its row is locked meanwhile).

    ``get`` reads a counter as changed so far; ``event`` numbers each event with the next sequence number,
    so the log stays dense and ordered however many events one use case writes.
    """

    exp: ExperimentRecord
    changes: dict[str, Any] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)

    def get(self, key: str) -> Any:
        return self.changes.get(key, getattr(self.exp, key))

    def bump(self, key: str, by: int = 1) -> int:
        value = int(self.get(key)) + by
        self.changes[key] = value
        return value

    def add(self, key: str, by: float) -> None:
        self.changes[key] = float(self.get(key)) + by

    def event(self, payload: ev.Payload, at: float, ind_id: int | None = None, seq: int | None = None) -> None:
        n = self.bump("event_seq")
        kind, data = ev.encode(payload)
        self.events.append(EventRecord(self.exp.id, n, kind, at, ind_id, seq, data))

    def flush(self, tx: StoreTx, now: float) -> None:
        if self.events:
            tx.append_events(self.events)
        if self.changes:
            self.changes["updated_at"] = now
            tx.update_experiment(self.exp.id, self.changes, defer=True)  # the row is locked and read
