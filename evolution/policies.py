"""Policies over a search space's decision sequence, for the REINFORCE controller (``evolution.reinforce``).

A policy is a distribution over a genome's decision sequence (``SearchSpace.next_decision``): it samples
the sequence one decision at a time, and gives the gradient of ``-advantage * log p(sequence) -
entropy_weight * H`` with respect to its parameters, where H is the sum of the entropies of the
distributions it sampled from along the sequence. Parameters are a tuple of float64 numpy arrays; no
function here changes an array it is given (every result is a new array), and all randomness is the
caller's: sampling reads uniforms from a ``random.Random``.

- ``FactorizedPolicy``: one softmax per position of the sequence (NAS-Bench-201's REINFORCE baseline,
  Dong & Yang 2020: one logit vector per edge, initialised from N(0, 1e-3^2)).
- ``LSTMPolicy``: the controller of Zoph & Le (2017) and Zoph et al. (2018): one LSTM layer whose
  input at each step is the embedding of the previous decision (a learned start vector at step 0),
  and one softmax head per decision kind (NASNet: ``input`` and ``op``).

A decision's number of choices may vary with its position or with earlier decisions: the parameters
are sized by ``Layout.probe`` (the largest number of choices seen per position and per kind), and a
decision with more choices than that gets zero logits for the extra ones (uniform over them, no
parameters), so every sequence the space can produce has a probability.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from genome import SearchSpace

Array = npt.NDArray[np.float64]
Params = tuple[Array, ...]
#: Random decision sequences walked (with a fixed local RNG) to learn the shape of a space's sequence.
PROBE_SAMPLES = 64
#: Longer sequences than this are a space's bug (a next_decision that never ends), not a layout.
MAX_DECISIONS = 100_000


@dataclass(frozen=True, slots=True)
class Step:
    """One decision of a sequence: its position, kind, number of choices and the choice taken."""

    position: int
    kind: str
    choices: int
    action: int


@dataclass(frozen=True, slots=True)
class Layout:
    """The shape of a space's decision sequences: per position the largest number of choices (and the
    kind seen there first), per kind the largest number of choices, kinds in order of first sight."""

    positions: tuple[tuple[str, int], ...]
    kinds: tuple[tuple[str, int], ...]

    @classmethod
    def probe(cls, space: SearchSpace[Any], samples: int = PROBE_SAMPLES) -> Layout:
        """Walk ``samples`` random decision sequences through ``next_decision`` (no genome is built, so a
        space whose decision view covers only part of its genomes is probed as well)."""
        rng = random.Random(0x5EED)  # a local generator: the layout is a pure function of the space
        positions: list[tuple[str, int]] = []
        kinds: dict[str, int] = {}
        for _ in range(samples):
            prefix: list[int] = []
            while (decision := space.next_decision(prefix)) is not None:
                if len(prefix) == len(positions):
                    positions.append((decision.kind, decision.choices))
                else:
                    kind, width = positions[len(prefix)]
                    positions[len(prefix)] = (kind, max(width, decision.choices))
                kinds[decision.kind] = max(kinds.get(decision.kind, 0), decision.choices)
                prefix.append(rng.randrange(decision.choices) if decision.choices > 0 else 0)
                if len(prefix) > MAX_DECISIONS:
                    raise ValueError(f"a decision sequence of more than {MAX_DECISIONS} decisions")
        return cls(tuple(positions), tuple(kinds.items()))

    def kind_index(self, kind: str) -> int | None:
        for i, (name, _) in enumerate(self.kinds):
            if name == kind:
                return i
        return None


def steps_of(space: SearchSpace[Any], decisions: Sequence[int]) -> tuple[Step, ...]:
    """The steps of a complete decision sequence (the decision each one answered, from ``next_decision``)."""
    out: list[Step] = []
    for i, action in enumerate(decisions):
        decision = space.next_decision(decisions[:i])
        if decision is None:
            break
        out.append(Step(i, decision.kind, decision.choices, int(action)))
    return tuple(out)


def _readonly(array: Array) -> Array:
    array.setflags(write=False)
    return array


def _logits(stored: Array, choices: int) -> Array:
    """The first ``choices`` stored logits, padded with zeros when the decision has more choices."""
    if choices <= stored.shape[0]:
        return np.array(stored[:choices], dtype=np.float64)
    return np.concatenate([stored, np.zeros(choices - stored.shape[0])])


def softmax(z: Array) -> Array:
    e = np.exp(z - z.max())
    out: Array = e / e.sum()
    return out


def sample_index(p: Array, u: float) -> int:
    """Inverse-CDF sampling of ``p`` with one uniform ``u`` in [0, 1) (the same on every platform)."""
    cdf = np.cumsum(p)
    return min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(p) - 1)


def _logit_grad(p: Array, action: int, advantage: float, entropy_weight: float) -> tuple[Array, float, float]:
    """d/dz of ``-advantage * log p[action] - entropy_weight * H(p)`` for p = softmax(z); also log p[a], H."""
    logp = np.log(np.maximum(p, 1e-300))
    entropy = float(-(p * logp).sum())
    onehot = np.zeros_like(p)
    onehot[action] = 1.0
    grad = -advantage * (onehot - p) + entropy_weight * p * (logp + entropy)
    return grad, float(logp[action]), entropy


class Policy(Protocol):
    """What ``evolution.reinforce`` needs of a policy."""

    @property
    def name(self) -> str: ...

    def init(self, gen: np.random.Generator) -> Params: ...

    def sample(self, params: Params, space: SearchSpace[Any], rng: random.Random) -> tuple[int, ...]: ...

    def grad(self, params: Params, steps: Sequence[Step], advantage: float,
             entropy_weight: float) -> tuple[Params, float, float]:
        """Gradients of ``-advantage * log p(steps) - entropy_weight * H``; also log p(steps) and H."""
        ...


@dataclass(frozen=True, slots=True)
class FactorizedPolicy:
    """Independent softmaxes, one per position: parameters are one (positions x widest) logit table.

    Rows have a handful of entries, so the per-row arithmetic is plain Python floats (numpy's per-call
    overhead would dominate); the table itself is a numpy array like every other policy's parameters.
    """

    layout: Layout
    init_scale: float = 1e-3
    name: str = "factorized"

    @property
    def width(self) -> int:
        return max((c for _, c in self.layout.positions), default=1)

    def init(self, gen: np.random.Generator) -> Params:
        shape = (len(self.layout.positions), self.width)
        return (_readonly(self.init_scale * gen.standard_normal(shape)),)

    @staticmethod
    def _probs(rows: list[list[float]], position: int, choices: int) -> list[float]:
        row = rows[position] if position < len(rows) else []
        z = row[:choices] + [0.0] * (choices - len(row)) if choices > len(row) else row[:choices]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = sum(e)
        return [v / total for v in e]

    def sample(self, params: Params, space: SearchSpace[Any], rng: random.Random) -> tuple[int, ...]:
        rows: list[list[float]] = params[0].tolist()
        prefix: list[int] = []
        while (decision := space.next_decision(prefix)) is not None:
            p = self._probs(rows, len(prefix), decision.choices)
            u = rng.random()
            acc, pick = 0.0, len(p) - 1
            for j, pj in enumerate(p):
                acc += pj
                if u < acc:
                    pick = j
                    break
            prefix.append(pick)
        return tuple(prefix)

    def grad(self, params: Params, steps: Sequence[Step], advantage: float,
             entropy_weight: float) -> tuple[Params, float, float]:
        (table,) = params
        rows: list[list[float]] = table.tolist()
        out = [[0.0] * table.shape[1] for _ in range(table.shape[0])]
        logp = entropy = 0.0
        for s in steps:
            p = self._probs(rows, s.position, s.choices)
            logs = [math.log(max(v, 1e-300)) for v in p]
            h = -sum(v * lv for v, lv in zip(p, logs, strict=True))
            logp += logs[s.action]
            entropy += h
            if s.position >= len(rows):
                continue
            target = out[s.position]
            for j in range(min(len(target), s.choices)):
                hit = 1.0 if j == s.action else 0.0
                target[j] += -advantage * (hit - p[j]) + entropy_weight * p[j] * (logs[j] + h)
        return (np.array(out, dtype=np.float64).reshape(table.shape),), logp, entropy


def _sigmoid(x: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


@dataclass(frozen=True, slots=True)
class LSTMPolicy:
    """One LSTM layer over the decision sequence (Zoph & Le 2017; Zoph et al. 2018).

    Parameters, in order: the start input (E,), the LSTM weights W ((E + H) x 4H, gates i, f, g, o) and
    bias b (4H,), then per kind its embedding table (V x E), head weights (H x V) and head bias (V,). The
    input of step t > 0 is the embedding of decision t - 1 in the table of its kind; the head of step t
    is the one of its kind. Every parameter starts uniform in [-init_scale, init_scale].
    """

    layout: Layout
    hidden: int = 100
    embedding: int = 100
    init_scale: float = 0.1
    name: str = "lstm"

    def init(self, gen: np.random.Generator) -> Params:
        e, h, a = self.embedding, self.hidden, self.init_scale
        arrays: list[Array] = [gen.uniform(-a, a, e), gen.uniform(-a, a, (e + h, 4 * h)), gen.uniform(-a, a, 4 * h)]
        for _, vocab in self.layout.kinds:
            arrays += [gen.uniform(-a, a, (vocab, e)), gen.uniform(-a, a, (h, vocab)), gen.uniform(-a, a, vocab)]
        return tuple(_readonly(x) for x in arrays)

    def _kind(self, kind: str) -> int:
        index = self.layout.kind_index(kind)
        return -1 if index is None else index

    def _embedding(self, params: Params, previous: Step | None) -> tuple[Array, int, int]:
        """The input for the step after ``previous``: (vector, parameter index, row; -1 for none)."""
        if previous is None:
            return params[0], 0, -1
        k = self._kind(previous.kind)
        if k < 0:
            return np.zeros(self.embedding), -1, -1
        table = params[3 + 3 * k]
        row = min(previous.action, table.shape[0] - 1)
        return table[row], 3 + 3 * k, row

    def _cell(self, params: Params, x: Array, h: Array, c: Array) -> tuple[Array, ...]:
        hidden = self.hidden
        z = np.concatenate([x, h]) @ params[1] + params[2]
        i, f = _sigmoid(z[:hidden]), _sigmoid(z[hidden:2 * hidden])
        g, o = np.tanh(z[2 * hidden:3 * hidden]), _sigmoid(z[3 * hidden:])
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        return i, f, g, o, c_new, tanh_c, o * tanh_c

    def _head(self, params: Params, kind: str, h: Array, choices: int) -> tuple[Array, int]:
        k = self._kind(kind)
        if k < 0:
            return np.zeros(choices), -1
        w, b = params[4 + 3 * k], params[5 + 3 * k]
        return _logits(h @ w + b, choices), k

    def sample(self, params: Params, space: SearchSpace[Any], rng: random.Random) -> tuple[int, ...]:
        h = c = np.zeros(self.hidden)
        prefix: list[int] = []
        previous: Step | None = None
        while (decision := space.next_decision(prefix)) is not None:
            x, _, _ = self._embedding(params, previous)
            *_, c, _, h = self._cell(params, x, h, c)
            logits, _ = self._head(params, decision.kind, h, decision.choices)
            action = sample_index(softmax(logits), rng.random())
            previous = Step(len(prefix), decision.kind, decision.choices, action)
            prefix.append(action)
        return tuple(prefix)

    def grad(self, params: Params, steps: Sequence[Step], advantage: float,
             entropy_weight: float) -> tuple[Params, float, float]:
        hidden, emb = self.hidden, self.embedding
        grads = [np.zeros_like(p) for p in params]
        h = c = np.zeros(hidden)
        tape: list[tuple[Any, ...]] = []
        logp = entropy = 0.0
        previous: Step | None = None
        for s in steps:
            x, source, row = self._embedding(params, previous)
            h_prev, c_prev = h, c
            i, f, g, o, c, tanh_c, h = self._cell(params, x, h_prev, c_prev)
            logits, k = self._head(params, s.kind, h, s.choices)
            dlogits, lp, ent = _logit_grad(softmax(logits), s.action, advantage, entropy_weight)
            logp += lp
            entropy += ent
            tape.append((x, source, row, h_prev, c_prev, i, f, g, o, tanh_c, h, k, dlogits))
            previous = s
        dh_next = np.zeros(hidden)
        dc_next = np.zeros(hidden)
        inputs: list[Array] = []
        dzs: list[Array] = []
        for x, source, row, h_prev, c_prev, i, f, g, o, tanh_c, h, k, dlogits in reversed(tape):
            dh = dh_next.copy()
            if k >= 0:
                w = params[4 + 3 * k]
                n = min(w.shape[1], dlogits.shape[0])
                grads[4 + 3 * k][:, :n] += np.outer(h, dlogits[:n])
                grads[5 + 3 * k][:n] += dlogits[:n]
                dh += w[:, :n] @ dlogits[:n]
            do = dh * tanh_c
            dc = dh * o * (1.0 - tanh_c * tanh_c) + dc_next
            dz = np.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g),
                                 do * o * (1.0 - o)])
            inputs.append(np.concatenate([x, h_prev]))
            dzs.append(dz)
            dxh = params[1] @ dz
            dc_next = dc * f
            dh_next = dxh[emb:]
            if source == 0:
                grads[0] += dxh[:emb]
            elif source > 0:
                grads[source][row] += dxh[:emb]
        if dzs:
            # The LSTM weights' gradient, summed over steps in one pass (einsum's own loop: no BLAS threads).
            grads[1] = np.einsum("ti,tj->ij", np.array(inputs), np.array(dzs))
            grads[2] = np.sum(dzs, axis=0)
        return tuple(grads), logp, entropy


@dataclass(frozen=True, slots=True)
class Adam:
    """Adam (Kingma & Ba 2015) on a tuple of arrays; ``step`` returns new arrays and moments."""

    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def step(self, params: Params, grads: Params, m: Params, v: Params, t: int) -> tuple[Params, Params, Params]:
        new_p: list[Array] = []
        new_m: list[Array] = []
        new_v: list[Array] = []
        c1 = 1.0 - self.beta1 ** t
        c2 = 1.0 - self.beta2 ** t
        for p, g, mi, vi in zip(params, grads, m, v, strict=True):
            # Four fresh arrays per parameter (three results, one scratch), updated in place: large
            # temporaries are fresh pages the kernel must fault in, which costs more than the arithmetic.
            mt = np.multiply(mi, self.beta1)
            scratch = np.multiply(g, 1.0 - self.beta1)
            mt += scratch
            vt = np.multiply(g, g)
            vt *= 1.0 - self.beta2
            np.multiply(vi, self.beta2, out=scratch)
            vt += scratch
            np.divide(vt, c2, out=scratch)
            np.sqrt(scratch, out=scratch)
            scratch += self.eps
            pt = np.divide(mt, c1)
            pt /= scratch
            pt *= -self.learning_rate
            pt += p
            new_p.append(_readonly(pt))
            new_m.append(_readonly(mt))
            new_v.append(_readonly(vt))
        return tuple(new_p), tuple(new_m), tuple(new_v)


def zeros_like(params: Params) -> Params:
    return tuple(_readonly(np.zeros_like(p)) for p in params)


def log_prob_and_entropy(policy: Policy, params: Params, steps: Sequence[Step]) -> tuple[float, float]:
    """log p(steps) and the summed entropy along them (for tests: finite differences of the objective)."""
    _, logp, entropy = policy.grad(params, steps, 0.0, 0.0)
    return logp, entropy
