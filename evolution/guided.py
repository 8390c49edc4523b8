"""Predictor-guided regularized evolution (``guided``): tournament selection as in aging evolution, but each
proposal mutates the parent m times and keeps the candidate a surrogate fitted on the completed members
ranks best.

This is the predictor-guided evolution of the NAS literature (Wei et al., "NPENAS: Neural Predictor
Guided Evolution for Neural Architecture Search", IEEE TNNLS 2022; White et al., "How Powerful are
Performance Predictors in Neural Architecture Search?", NeurIPS 2021): the evolutionary loop is kept,
and the predictor only decides which of several mutated children is worth an evaluation. Here the
predictor is a Gaussian process over the space's decision sequence (``SearchSpace.decisions``) with the
kernel ``exp(-hamming / (length_scale * L))`` (L = the sequence length), fitted to the most recent
``window`` completions with their fitness clipped below at the median and standardized (so the many
broken cells of a space such as NAS-Bench-201's, with accuracies near chance, do not decide the fit), and a
noise variance ``noise``. Candidates already evaluated (in the window or the population) are skipped,
since the table or a retraining would tell little new; when every candidate was, the first mutation is
the child.

The shape is aging evolution's: asynchronous (a proposal sees the completions logged before it), a pure
fold over completions in completion order (the state is the population and the window: plain tuples;
the surrogate is refitted from the window at each proposal, with numpy, so it is a function of the
completions alone), and deterministic from (seed, k): ``replay --verify`` re-derives every proposal. Its
cost per proposal grows with the window (the inverse kernel matrix is updated per completion in
O(window^2) by block inversion, elementwise: about a millisecond on NAS-Bench-201; ``amoeba bench``
reports microseconds per evaluation).

Options: ``candidates`` (m, default 10), ``removal`` (``oldest``, the default: the population is the P
most recent completions, as in aging evolution; or ``worst``: the P best, as non-aging evolution; on
NAS-Bench-201's protocol, 500 runs, the two measured 94.18 +- 0.28 and 94.19 +- 0.31), ``length_scale``
(0.167: about one decision of NAS-Bench-201's six), ``noise`` (0.1), ``window`` (500).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evolution.algorithms import AlgorithmContext, Member, Proposal, Selection
from evolution.regularized import select_parent
from evolution.reinforce import integer_option, layout_of
from genome import GenomeError, SearchSpace
from mutations import Mutation

#: Predictions are rounded to this many significant digits before the argmax, so that last-bit
#: differences between linear-algebra libraries cannot change which candidate wins a tie.
ROUND_DIGITS = 10


@dataclass(frozen=True, slots=True)
class Completion:
    """A completed member with its decision sequence (computed once, when it is observed); None when the
    space's decision view does not cover the genome (a seeded or hand-made one)."""

    member: Member
    decisions: tuple[int, ...] | None

    @property
    def key(self) -> Any:
        return self.decisions if self.decisions is not None else self.member.genome.fingerprint


@dataclass(frozen=True, slots=True, eq=False)
class GuidedState:
    """The population (oldest first), the surrogate's training window (completion order), the window's
    decision sequences as rows of ``xs`` (padded with -1) and ``kinv``, the inverse of the window's kernel
    matrix plus the noise variance, updated in O(window^2) per completion (a fold, like the rest)."""

    population: tuple[Completion, ...]
    window: tuple[Completion, ...]
    xs: np.ndarray
    kinv: np.ndarray

    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(c.member for c in self.population)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GuidedState):
            return NotImplemented
        return ([c.member for c in self.population] == [c.member for c in other.population]
                and [c.member for c in self.window] == [c.member for c in other.window]
                and np.array_equal(self.xs, other.xs) and np.array_equal(self.kinv, other.kinv))

    __hash__ = None  # type: ignore[assignment]


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _standardized_targets(y: np.ndarray) -> np.ndarray:
    clipped = np.maximum(y, np.median(y))
    spread = clipped.std()
    centred: np.ndarray = clipped - clipped.mean()
    return centred / spread if spread > 0 else centred


def _hamming_kernel(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """``exp(-hamming(a_i, b_j) / scale)`` for rows of equal-length integer sequences."""
    distance = (a[:, None, :] != b[None, :, :]).sum(axis=2)
    out: np.ndarray = np.exp(-distance / scale)
    return out


def _row_dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` by elementwise products and sums. Small linear algebra through BLAS may start
    its thread pool, which on a loaded machine costs a hundredfold; these sums never do."""
    out: np.ndarray = (matrix * vector[None, :]).sum(axis=1)
    return out


@dataclass(frozen=True, slots=True)
class GuidedEvolution:
    """Tournament selection, m mutations per proposal, the child the surrogate ranks best; see the module."""

    space: SearchSpace[Any]
    mutation: Mutation
    population_size: int
    sample_size: int
    selection: Selection
    length: int
    candidates: int = 10
    removal: str = "oldest"
    length_scale: float = 1.0 / 6.0
    noise: float = 0.1
    window: int = 500

    @property
    def name(self) -> str:
        return "guided"

    @property
    def scale(self) -> float:
        return self.length_scale * max(1, self.length)

    def initial(self) -> GuidedState:
        return GuidedState((), (), _readonly(np.zeros((0, self.length), dtype=np.int64)),
                           _readonly(np.zeros((0, 0))))

    def _row(self, decisions: Sequence[int]) -> np.ndarray:
        row = list(decisions)[:self.length]
        return np.array([*row, *([-1] * (self.length - len(row)))], dtype=np.int64)

    def _decisions(self, genome: Any) -> tuple[int, ...] | None:
        try:
            return tuple(self.space.decisions(genome))
        except GenomeError:  # outside the decision view: the surrogate cannot place it
            return None

    def observe(self, state: GuidedState, member: Member) -> GuidedState:
        completion = Completion(member, self._decisions(member.genome))
        grown = (*state.population, completion)
        if len(grown) > self.population_size:
            if self.removal == "oldest":
                grown = grown[1:]
            else:
                worst = min(range(len(grown)), key=lambda i: (grown[i].member.fitness, i))
                grown = grown[:worst] + grown[worst + 1:]
        if completion.decisions is None or not math.isfinite(member.fitness):
            return GuidedState(grown, state.window, state.xs, state.kinv)
        row = self._row(completion.decisions)
        # Add the point: the block inverse through the Schur complement s = c - b' K^-1 b.
        b = _hamming_kernel(state.xs, row[None, :], self.scale)[:, 0]
        u = _row_dot(state.kinv, b)
        s = 1.0 + self.noise - float((b * u).sum())
        n = len(state.window)
        kinv = np.empty((n + 1, n + 1))
        kinv[:n, :n] = state.kinv + np.outer(u, u) / s
        kinv[:n, n] = kinv[n, :n] = -u / s
        kinv[n, n] = 1.0 / s
        xs = np.concatenate([state.xs, row[None, :]])
        window = (*state.window, completion)
        if len(window) > self.window:
            # Drop the oldest point: K^-1 of the rest is E - f f' / g for the dropped row and column.
            f, g = kinv[1:, 0], kinv[0, 0]
            kinv = kinv[1:, 1:] - np.outer(f, f) / g
            xs, window = xs[1:], window[1:]
        return GuidedState(grown, window, _readonly(np.array(xs)), _readonly(np.array(kinv)))

    def propose(self, state: GuidedState, seq: int, rng: random.Random) -> tuple[Proposal, GuidedState]:
        if len(state.population) < self.population_size:
            return Proposal(seq, self.space.sample(rng), None, "random"), state
        parent = select_parent(state.members, self.sample_size, self.selection, rng)
        children = [self.mutation(parent.genome, rng) for _ in range(self.candidates)]
        # Genomes already evaluated, by decision sequence (what the surrogate sees of a genome).
        seen = {c.key for c in state.window} | {c.key for c in state.population}
        fresh: list[tuple[Any, tuple[int, ...] | None]] = []
        for child in children:
            decisions = self._decisions(child.genome)
            key = decisions if decisions is not None else child.genome.fingerprint
            if key not in seen:
                seen.add(key)
                fresh.append((child, decisions))
        if len(fresh) <= 1 or len(state.window) < 2:
            child = fresh[0][0] if fresh else children[0]
            return Proposal(seq, child.genome, parent.seq, child.description), state
        placed = [d for _, d in fresh if d is not None]
        predicted = iter(self.predict(state, placed) if placed else [])
        # A candidate outside the decision view gets the prior mean (0 in standardized units).
        scores = [next(predicted) if d is not None else 0.0 for _, d in fresh]
        best = max(range(len(fresh)), key=lambda i: (scores[i], -i))
        child = fresh[best][0]
        return Proposal(seq, child.genome, parent.seq, f"{child.description} (best of {len(fresh)} predicted)"), state

    def predict(self, state: GuidedState, sequences: Sequence[Sequence[int]]) -> list[float]:
        """The surrogate's posterior mean (standardized units) for each decision sequence."""
        y = _standardized_targets(np.array([c.member.fitness for c in state.window], dtype=np.float64))
        alpha = _row_dot(state.kinv, y)
        q = np.array([self._row(s) for s in sequences], dtype=np.int64)
        mean = _row_dot(_hamming_kernel(q, state.xs, self.scale), alpha)
        return [float(f"{v:.{ROUND_DIGITS}g}") for v in mean.tolist()]

    def population(self, state: GuidedState) -> tuple[Member, ...]:
        return state.members

    def restore(self, members: Sequence[Member]) -> None:
        return None  # the surrogate's window is history: the caller refolds the completions


def guided(context: AlgorithmContext) -> GuidedEvolution:
    context.check_options(("candidates", "removal", "length_scale", "noise", "window"))
    candidates = integer_option(context, "candidates", 10, 1, 1000)
    removal = context.choice("removal", "oldest", ("oldest", "worst"))
    length_scale = context.option("length_scale", 1.0 / 6.0, 1e-3, 1e3)
    noise = context.option("noise", 0.1, 1e-6, 1e3)
    window = integer_option(context, "window", 500, 2, 20_000)
    # The surrogate reads the decision sequence: a space without one is refused now, in one line.
    length = len(layout_of(context.space).positions)
    return GuidedEvolution(context.space, context.mutation, context.population_size, context.sample_size,
                           context.selection, length, candidates, removal, length_scale, noise, window)
