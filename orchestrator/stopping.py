"""The early-stopping rule's state as a fold over an experiment's stored event log (the service's cache
catches up with it; replay re-derives every stop decision with it)."""

from __future__ import annotations

from domain import events as ev
from evolution import early_stopping
from evolution.early_stopping import Decision, StoppingSettings, StoppingState

#: Events after which a child's run is over without completing (a retry starts its curve afresh).
_ENDED = (ev.Failed, ev.Rejected, ev.Stopped, ev.Released, ev.Expired, ev.Requeued)


def stopping_step(settings: StoppingSettings, state: StoppingState, payload: ev.Payload,
                  seq: int | None) -> tuple[StoppingState, Decision | None]:
    """Fold one event; for a progress report, also the decision the rule takes for it."""
    if seq is None:
        return state, None
    if isinstance(payload, ev.ProgressReported):
        return early_stopping.progress(settings, state, seq, payload.epoch, payload.accuracy)
    if isinstance(payload, ev.Completed):
        return early_stopping.completed(state, seq), None
    if isinstance(payload, _ENDED):
        return early_stopping.ended(state, seq), None
    return state, None


def stopping_fold(settings: StoppingSettings, state: StoppingState, kind: str, seq: int | None,
                  data_json: str) -> StoppingState:
    """``stopping_step`` over a stored event row (kinds the rule ignores cost no decoding)."""
    if kind not in _KINDS:
        return state
    return stopping_step(settings, state, ev.decode(kind, data_json), seq)[0]


_KINDS = frozenset(str(k) for k in (ev.EventKind.PROGRESS, ev.EventKind.COMPLETED, ev.EventKind.FAILED,
                                     ev.EventKind.REJECTED, ev.EventKind.STOPPED, ev.EventKind.RELEASED,
                                     ev.EventKind.EXPIRED, ev.EventKind.REQUEUED))
