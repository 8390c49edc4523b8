"""The search-space plug-in: one ``Space`` value binds everything the system needs of a space.

A space is registered once (``spaces.registry``; third parties through the ``amoeba.spaces`` entry-point
group) and nothing else in Amoeba names it: the orchestrator samples, mutates, decodes and prices its
genomes through this value, the workers build its network through ``load_model``, the command line
reads its named genomes and standard network from it.
"""

from __future__ import annotations

import functools
import importlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genome.base import Decision, Genome, GenomeError, SearchSpace
from latency.estimate import LatencyReport, estimate
from latency.ir import Graph
from latency.settings import LatencySettings, resolve_settings
from mutations import Mutation, build_mutation

#: ``lower(genome, network)``: the network of a genome as latency IR, pure (no JAX).
Lowering = Callable[[Any, Mapping[str, Any]], Graph]
#: ``fast(genome, network, device, clock_mhz)``: the totals-only latency report, or None to lower fully.
FastEstimate = Callable[[Any, Mapping[str, Any], str, "int | None"], "LatencyReport | None"]
#: ``training_overrides(genome)``: training settings the genome carries, replacing the experiment's for it.
TrainingOverrides = Callable[[Genome], Mapping[str, Any]]
#: ``inherit(parent, child, mutation, parent_variables, fresh_child_variables) -> (variables, inherited)``.
Inherit = Callable[[Genome, Genome, str, Mapping[str, Any], Mapping[str, Any]], tuple[dict[str, Any], int]]


class SpaceError(GenomeError):
    """Unknown space, or a plug-in that does not provide what a space must."""


def load_object(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names (imported on first use)."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module
    except (ImportError, AttributeError) as exc:
        raise SpaceError(f"cannot load {reference!r}: {exc}") from None


@dataclass(frozen=True, eq=False)
class Space:
    """A search space: its genome codec and decision view, mutations, standard network, latency lowering
    and (lazily, worker side) Flax model.

    ``codec`` samples and decodes genomes and maps them to and from decision sequences
    (``genome.base.SearchSpace``). ``mutations`` maps the JSON ``type`` of each of the space's mutation
    leaves to its operator class; ``default_mutation`` is the spec experiments get when they name none.
    ``network`` is the standard network (sizes such as N and F, ``input_size``, ``num_classes``) that
    latency and model sizes are quoted for unless an experiment overrides keys of it; ``lower`` turns a
    genome and such a network into latency IR (pure; it must agree layer for layer with tracing the
    Flax model). ``model`` is a ``"module:function"`` reference to the Flax builder
    ``build(genome, network, *, num_classes, dataset, dropout, dtype, bn_momentum, scan) -> nn.Module``,
    imported only by workers. ``configs`` names the shipped experiment configs of the space by evaluator.
    ``named`` maps reference genome names to factories, ``table`` optionally
    references a tabular benchmark (``tables.TableBenchmark``), ``text_form`` parses a short textual
    genome (NAS-Bench-201's arch strings), ``fast_estimate`` may price a genome without lowering it.
    ``training_overrides`` gives the training settings a genome carries (the lse space's learning rate),
    which replace the experiment's for that child. ``final_preset`` names the training preset ``amoeba
    retrain`` uses for the space's genomes when the user names none (None: the user must). ``inherit`` starts a child from its parent's trained
    weights: given both genomes, the child's mutation description and the parent's and the child's fresh
    Flax variables (nested dicts of arrays, ``params``/``batch_stats``), it returns the variables to start
    from and how many parameters came from the parent. Both are optional (None: nothing carried, fresh
    weights) and pure (no JAX: arrays are only compared by shape and passed on).
    """

    name: str
    codec: SearchSpace[Any]
    mutations: Mapping[str, Callable[..., Mutation]]
    default_mutation: Mapping[str, Any]
    network: Mapping[str, Any]
    lower: Lowering
    description: str = ""
    named: Mapping[str, Callable[[], Genome]] = field(default_factory=dict)
    model: str | None = None
    table: str | None = None
    text_form: Callable[[str], Genome] | None = None
    fast_estimate: FastEstimate | None = None
    #: Shipped config names ``amoeba up --space NAME`` runs, by evaluator (``train``, ``table``).
    configs: Mapping[str, str] = field(default_factory=dict)
    training_overrides: TrainingOverrides | None = None
    inherit: Inherit | None = None
    final_preset: str | None = None

    # --- genomes -----------------------------------------------------------------------------------------

    def sample(self, rng: random.Random) -> Genome:
        genome: Genome = self.codec.sample(rng)
        return genome

    def parse(self, data: Any) -> Genome:
        """A validated genome from JSON data, a JSON string, or the space's text form."""
        if isinstance(data, str):
            text = data.strip()
            if text.startswith("{"):
                data = _json(text)
            elif self.text_form is not None:
                parsed: Genome = self.text_form(text)
                return parsed
        genome: Genome = self.codec.from_json(data)
        return genome

    # --- the decision view (for controllers such as REINFORCE) ---------------------------------------

    def decisions(self, genome: Genome) -> tuple[int, ...]:
        return self.codec.decisions(genome)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        return self.codec.next_decision(prefix)

    def from_decisions(self, decisions: Sequence[int]) -> Genome:
        genome: Genome = self.codec.from_decisions(decisions)
        return genome

    # --- mutations -----------------------------------------------------------------------------------

    def build_mutation(self, spec: Any = None) -> Mutation:
        """The operator of a JSON mutation spec over this space's leaves (the default spec when None)."""
        return build_mutation(dict(self.default_mutation) if spec is None else spec, self.mutations)

    # --- latency -------------------------------------------------------------------------------------

    def latency_settings(self, overrides: Mapping[str, Any] | None = None) -> LatencySettings:
        """The standard network updated by an objective's ``latency`` overrides, checked by lowering a genome."""
        settings = resolve_settings(self.network, overrides)
        if overrides:
            self.lower(self.codec.sample(random.Random(0)), settings.network_dict())  # raises LoweringError
        return settings

    def graph(self, genome: Genome, **overrides: Any) -> Graph:
        """The latency IR of ``genome``'s standard network with some keys overridden (``cells=6``, ...)."""
        return self.lower(genome, resolve_settings(self.network, overrides).network_dict())

    def estimate(self, genome: Genome, settings: LatencySettings, *, layers: bool = False) -> LatencyReport:
        """The simulated latency of ``genome``'s network; memoized (a child often repeats its parent's genome)."""
        return _estimate(self, genome, settings, layers)  # type: ignore[arg-type]  # genomes are frozen values

    def price(self, genome: Genome, settings: LatencySettings) -> tuple[float, bool]:
        """(latency in ms, whether the parameters fit the on-chip cache) of ``genome`` under ``settings``."""
        report = self.estimate(genome, settings)
        return report.latency_ms, report.fits_on_chip

    # --- worker side ---------------------------------------------------------------------------------

    def load_model(self) -> Callable[..., Any]:
        """The Flax builder (imports JAX: never called by the orchestrator)."""
        if self.model is None:
            raise SpaceError(f"space {self.name!r} has no Flax model")
        builder: Callable[..., Any] = load_object(self.model)
        return builder

    def load_table(self) -> Any:
        """The space's tabular benchmark (``tables.TableBenchmark``), or SpaceError when it has none."""
        if self.table is None:
            raise SpaceError(f"space {self.name!r} has no tabular benchmark")
        return load_object(self.table)


@functools.lru_cache(maxsize=8192)
def _estimate(space: Space, genome: Genome, settings: LatencySettings, layers: bool) -> LatencyReport:
    network = settings.network_dict()
    if not layers and space.fast_estimate is not None:
        fast = space.fast_estimate(genome, network, settings.device, settings.clock_mhz)
        if fast is not None:
            return fast
    return estimate(space.lower(genome, network), settings.device, settings.clock_mhz, layers=layers)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenomeError(f"genome is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise GenomeError("genome JSON is nested too deeply") from None


def clear_cache() -> None:
    """Forget memoized latency estimates, the NASNet and NB201 fast paths' per-cell totals included (benchmarks
    measure the uncached cost)."""
    from latency import nasnet, nb201

    _estimate.cache_clear()
    nasnet.clear_cell_totals()
    nb201.clear_cell_totals()
