"""domain.events: every payload class round-trips through encode/decode, unknown kinds stay readable,
and the stored JSON is the log's old format (the keys earlier versions wrote)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from domain import events as ev
from genome.base import canonical_json

pytestmark = pytest.mark.unit

GENOME = {"arch": "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|", "space": "nb201"}

#: One value of every payload class with every field set to a non-default value, and one with only the
#: required fields (the defaults must round-trip too).
FULL: list[Any] = [
    ev.ExperimentCreated({"name": "exp", "space": "nb201", "population_size": 4},
                         forked_from={"experiment": "src", "at": 40, "members": [3, 5]}),
    ev.Proposed("0123456789abcdef", parent_seq=7, mutation="edge 2: none -> skip_connect"),
    ev.Leased("w-1", attempt=3),
    ev.Completed(0.875, 0.91, latency_ms=1.25),
    ev.Failed("out of memory", attempt=2),
    ev.Rejected("estimated latency 9 ms over the objective's max_latency_ms 5", 9.0, before_training=True),
    ev.Requeued("preempted", attempt=1),
    ev.Released("w-2"),
    ev.Expired(attempt=2, requeued=False),
    ev.ExperimentDone(30),
    ev.Seeded("fedcba9876543210", GENOME, 0.8, accuracy=0.8, latency_ms=2.5,
              source={"experiment": "src", "proposal_seq": 12}),
    ev.Killed(by_proposal=14),
    ev.Paused("5 failures in a row: out of memory"),
    ev.Resumed("by the user"),
    ev.ProgressReported(3, accuracy=0.61, train_loss=1.2, seconds=42.5),
    ev.Stopped(3, accuracy=0.61, reason="median rule", joined=True, fitness=0.61, latency_ms=1.5),
]
MINIMAL: list[Any] = [
    ev.ExperimentCreated({"name": "exp"}),
    ev.Proposed("0123456789abcdef"),
    ev.Leased("w-1"),
    ev.Completed(0.5, 0.5),
    ev.Failed(),
    ev.Rejected(),
    ev.Requeued(),
    ev.Released(),
    ev.Expired(),
    ev.ExperimentDone(),
    ev.Seeded("fedcba9876543210", GENOME, 0.5),
    ev.Killed(),
    ev.Paused(),
    ev.Resumed(),
    ev.ProgressReported(1),
    ev.Stopped(1),
]


def test_the_samples_cover_every_kind() -> None:
    assert [p.kind for p in FULL] == [p.kind for p in MINIMAL] == list(ev.EventKind)
    assert {type(p) for p in FULL} == set(ev._BY_KIND.values())


@pytest.mark.parametrize("payload", FULL + MINIMAL, ids=lambda p: f"{p.kind}-{len(json.dumps(p.to_data()))}")
def test_every_payload_round_trips(payload: Any) -> None:
    kind, text = ev.encode(payload)
    assert kind == payload.kind.value
    assert text == canonical_json(json.loads(text))  # the canonical form: sorted keys, no whitespace
    decoded = ev.decode(kind, text)
    assert type(decoded) is type(payload) and decoded == payload
    assert ev.encode(decoded) == (kind, text)


def test_event_kinds_are_the_stored_strings() -> None:
    assert [k.value for k in ev.EventKind] == [
        "experiment_created", "proposed", "leased", "completed", "failed", "rejected", "requeued", "released",
        "expired", "experiment_done", "seeded", "killed", "paused", "resumed", "progress", "stopped"]
    entry = ev.Event(seq=3, at=1.5, individual_id=2, proposal_seq=0, payload=ev.Leased("w"))
    assert entry.kind == "leased" and type(entry.kind) is str


def test_an_unknown_kind_decodes_to_unknown_and_survives_re_encoding() -> None:
    text = '{"budget":{"gpu_hours":3},"note":"from a newer version"}'
    got = ev.decode("budget_raised", text)
    assert got == ev.Unknown("budget_raised", {"budget": {"gpu_hours": 3}, "note": "from a newer version"})
    assert ev.encode(got) == ("budget_raised", text)
    assert ev.decode("budget_raised", None) == ev.Unknown("budget_raised", {})
    assert ev.decode("budget_raised", "") == ev.Unknown("budget_raised", {})
    # Data that is not an object is kept under "value".
    assert ev.decode("budget_raised", "[1,2]") == ev.Unknown("budget_raised", {"value": [1, 2]})
    # A known kind's name in another case is not that kind.
    assert isinstance(ev.decode("Completed", '{"fitness":1.0,"accuracy":1.0}'), ev.Unknown)


def test_keys_a_newer_version_added_are_ignored_and_absent_ones_take_their_defaults() -> None:
    assert ev.decode("leased", '{"attempt":2,"gpu":"h200","worker":"w-1"}') == ev.Leased("w-1", 2)
    assert ev.decode("released", "{}") == ev.Released("")
    assert ev.decode("experiment_done", None) == ev.ExperimentDone(0)
    assert ev.decode("expired", '{"attempt":3}') == ev.Expired(3, requeued=True)
    # What the old expiry wrote for the final failure: a reason, no attempt.
    assert ev.decode("failed", '{"reason":"lease expired 2 times (last holder w-a)"}') == ev.Failed(
        "lease expired 2 times (last holder w-a)", None)
    assert ev.decode("rejected", '{"latency_ms":1.4,"reason":"r"}') == ev.Rejected("r", 1.4, before_training=False)


# The old service wrote ``batch.event(kind, ..., **data)`` with ``canonical_json(data)``: these are its
# keyword arguments for the three kinds every replay and fold reads.
OLD_KEYS = {
    "completed": {"fitness", "accuracy", "latency_ms"},
    "proposed": {"fingerprint", "parent_seq", "mutation"},
    "leased": {"worker", "attempt"},
}


def test_completed_proposed_and_leased_keep_exactly_the_old_json() -> None:
    completed = ev.Completed(0.9, 0.9, 1.5)
    assert ev.encode(completed) == ("completed", '{"accuracy":0.9,"fitness":0.9,"latency_ms":1.5}')
    assert ev.encode(completed)[1] == canonical_json({"fitness": 0.9, "accuracy": 0.9, "latency_ms": 1.5})
    # No latency measured: the old log wrote the key with null, and so does this one.
    assert ev.encode(ev.Completed(0.7, 0.7)) == ("completed", '{"accuracy":0.7,"fitness":0.7,"latency_ms":null}')
    assert ev.encode(ev.Proposed("00ff", 3, "edge 1: none -> nor_conv_3x3")) == (
        "proposed", '{"fingerprint":"00ff","mutation":"edge 1: none -> nor_conv_3x3","parent_seq":3}')
    assert ev.encode(ev.Proposed("00ff", None, "random")) == (
        "proposed", canonical_json({"fingerprint": "00ff", "parent_seq": None, "mutation": "random"}))
    assert ev.encode(ev.Leased("w-1", 1)) == ("leased", '{"attempt":1,"worker":"w-1"}')
    for payload in (completed, ev.Proposed("00ff"), ev.Leased("w")):
        kind, text = ev.encode(payload)
        assert set(json.loads(text)) == OLD_KEYS[kind], kind


def test_optional_keys_are_written_only_when_set() -> None:
    assert ev.encode(ev.Rejected("r", 2.0)) == ("rejected", '{"latency_ms":2.0,"reason":"r"}')
    assert ev.encode(ev.Rejected("r", 2.0, before_training=True)) == (
        "rejected", '{"before_training":true,"latency_ms":2.0,"reason":"r"}')
    assert ev.encode(ev.ExperimentCreated({"a": 1})) == ("experiment_created", '{"config":{"a":1}}')
    assert json.loads(ev.encode(ev.ExperimentCreated({"a": 1}, {"experiment": "s"}))[1]) == {
        "config": {"a": 1}, "forked_from": {"experiment": "s"}}


def test_non_finite_numbers_are_never_written() -> None:
    with pytest.raises(ValueError):
        ev.encode(ev.Completed(math.nan, 0.5))
    with pytest.raises(ValueError):
        ev.encode(ev.Rejected("r", math.inf))
