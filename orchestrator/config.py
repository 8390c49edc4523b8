"""Experiment config files (YAML or JSON) to a validated ExperimentSpec, and the spec back to plain JSON."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import spaces
from domain import ExperimentSpec, InvalidArgument
from domain.errors import AmoebaError
from evolution import Algorithm, AlgorithmContext, EvolutionConfig, Objective, build_algorithm, build_objective
from evolution.early_stopping import parse_stopping
from genome.base import canonical_json
from latency.settings import LatencySettings
from spaces import Space

#: File keys -> spec fields; the spec's own field names are accepted too.
_ALIASES = {"population": "population_size", "sample": "sample_size", "P": "population_size", "S": "sample_size",
            "C": "evaluations"}
_FIELDS = (
    "name", "space", "population_size", "sample_size", "evaluations", "seed", "algorithm", "algorithm_options",
    "mutation", "objective", "training", "lease_timeout_s", "max_attempts", "max_consecutive_failures",
    "early_stopping", "artifacts",
)
#: The top K kept artifacts when a config says nothing (issue: "the top K (config, default 20)").
DEFAULT_KEEP_ARTIFACTS = 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: Seeds are stored in a signed 64-bit column.
_MAX_SEED = 2**63 - 1


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{key} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgument(f"{key} must be between {low} and {high}, got {value}")
    return value


#: A spec travels in every lease: well under the 4 MiB a gRPC message may carry, with room for the genome.
MAX_SPEC_JSON_BYTES = 256 * 1024
#: Values counted (shared YAML references each time) and nesting allowed in a spec's free-form sections.
MAX_VALUES, MAX_DEPTH = 20_000, 32


def _bounded(key: str, value: Any) -> None:
    """InvalidArgument when ``value`` expands to more than MAX_VALUES values or MAX_DEPTH levels (counted
    without building the expansion, which for a YAML alias bomb would not fit in memory)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise InvalidArgument(f"{key} holds more than {MAX_VALUES:,} values; an experiment config is small")
        if depth > MAX_DEPTH:
            raise InvalidArgument(f"{key} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1) for v in node)


def _plain_json(key: str, value: Any) -> Any:
    # NaN and infinities are not JSON: stored, they would break every later encoding of the spec.
    _bounded(key, value)
    try:
        return json.loads(json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        raise InvalidArgument(
            f"{key} must hold plain JSON values (finite numbers, strings, lists, mappings)") from None


def parse_spec(data: Any, *, name: str | None = None) -> ExperimentSpec:
    """Validate a config mapping (file keys or spec field names); fills the space's default mutation.

    ``name`` overrides the file's name. Raises InvalidArgument with one readable line.
    """
    if not isinstance(data, dict):
        raise InvalidArgument(f"an experiment config must be a mapping, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        field = _ALIASES.get(key, key)
        if field not in _FIELDS:
            raise InvalidArgument(f"unknown config key {key!r}; expected {', '.join(['population', 'sample', *_FIELDS[4:]])} or name, space")
        if field in values:
            raise InvalidArgument(f"config key {key!r} given twice (alias of {field})")
        values[field] = value
    if name is not None:
        values["name"] = name
    for required in ("name", "space", "population_size", "sample_size", "evaluations"):
        if required not in values:
            raise InvalidArgument(f"config needs {required!r}")
    exp_name = values["name"]
    if not isinstance(exp_name, str) or not _NAME.match(exp_name):
        raise InvalidArgument(
            f"experiment name must be 1-200 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {exp_name!r}"
        )
    try:
        space = spaces.get(values["space"])
    except AmoebaError as exc:
        raise InvalidArgument(str(exc)) from None
    population = _int(values, "population_size", 1, 100_000)
    sample = _int(values, "sample_size", 1, 100_000)
    evaluations = _int(values, "evaluations", 1, 100_000_000)
    seed = _int(values, "seed", 0, _MAX_SEED) if "seed" in values else 0
    algorithm, options = _algorithm(values.get("algorithm", "aging"), values.get("algorithm_options"))
    mutation = values.get("mutation") or dict(space.default_mutation)
    try:
        built_mutation = space.build_mutation(mutation)
    except AmoebaError as exc:
        raise InvalidArgument(f"mutation: {exc}") from None
    try:
        built = build_objective(values.get("objective", {"kind": "accuracy"}))
        space.latency_settings(dict(built.latency))
    except AmoebaError as exc:
        raise InvalidArgument(f"objective: {exc}") from None
    objective = built.to_spec()
    try:
        # Building it checks the algorithm's own options (names, ranges) before anything is stored.
        build_algorithm(algorithm, AlgorithmContext(space.codec, built_mutation, population, sample,
                                                    "pareto" if built.selection == "pareto" else "best", seed,
                                                    options))
    except AmoebaError as exc:
        raise InvalidArgument(f"algorithm: {exc}") from None
    training = values.get("training", {})
    if training is None:
        training = {}
    if not isinstance(training, dict):
        raise InvalidArgument(f"training must be a mapping, got {training!r}")
    training = _plain_json("training", training)
    if "table" in training:
        _check_table(space, training)
    timeout = values.get("lease_timeout_s", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
        raise InvalidArgument(f"lease_timeout_s must be a number, got {timeout!r}")
    if not 0.01 <= timeout <= 7 * 86400:
        raise InvalidArgument(f"lease_timeout_s must be between 0.01 and 604800 seconds, got {timeout}")
    attempts = _int(values, "max_attempts", 1, 1000) if "max_attempts" in values else 3
    breaker = _int(values, "max_consecutive_failures", 0, 1_000_000) if "max_consecutive_failures" in values else 25
    try:
        stopping = parse_stopping(values.get("early_stopping")).to_json()
    except AmoebaError as exc:
        raise InvalidArgument(str(exc)) from None
    artifacts = _artifacts(values.get("artifacts"))
    spec = ExperimentSpec(
        name=exp_name,
        space=space.name,
        population_size=population,
        sample_size=sample,
        evaluations=evaluations,
        seed=seed,
        algorithm=algorithm,
        algorithm_options=options,
        mutation=_plain_json("mutation", mutation),
        objective=objective,
        training=training,
        lease_timeout_s=float(timeout),
        max_attempts=attempts,
        max_consecutive_failures=breaker,
        early_stopping=stopping,
        artifacts=artifacts,
    )
    size = len(canonical_json(spec_to_dict(spec)))
    if size > MAX_SPEC_JSON_BYTES:
        # Every lease carries the training settings: a spec that cannot travel would leave all work unleasable.
        raise InvalidArgument(f"the experiment config is {size:,} bytes as JSON; at most {MAX_SPEC_JSON_BYTES:,} "
                              "fit in the work messages sent to workers")
    return spec


def _artifacts(value: Any) -> dict[str, Any]:
    """``artifacts: {keep: K}`` (the top K kept besides the population and the parents still needed) or
    ``{keep: all}`` (nothing deleted); absent: keep the top DEFAULT_KEEP_ARTIFACTS."""
    if value is None:
        return {"keep": DEFAULT_KEEP_ARTIFACTS}
    if not isinstance(value, dict):
        raise InvalidArgument(f"artifacts must be a mapping such as {{keep: 20}}, got {str(value)[:60]!r}")
    unknown = sorted(set(map(str, value)) - {"keep"})
    if unknown:
        raise InvalidArgument(f"unknown artifacts setting(s) {', '.join(unknown)}; expected keep")
    keep = value.get("keep", DEFAULT_KEEP_ARTIFACTS)
    if keep == "all":
        return {"keep": "all"}
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= 1_000_000:
        raise InvalidArgument(f"artifacts.keep must be a whole number from 0 to 1000000 or 'all', got {str(keep)[:60]!r}")
    return {"keep": keep}


def _check_table(space: Space, training: dict[str, Any]) -> None:
    """``training.table`` names the columns the table evaluator reads: refuse, at create time, a space without
    a tabular benchmark or a column the table does not have (every individual would fail)."""
    from tables.benchmark import TableSettings

    if space.table is None:
        raise InvalidArgument(f"training.table: the {space.name} space has no tabular benchmark for the table evaluator")
    try:
        benchmark = space.load_table()
        TableSettings.from_training(training, benchmark).check(benchmark.load(None), benchmark)
    except AmoebaError as exc:
        raise InvalidArgument(str(exc)) from None


def _algorithm(value: Any, options: Any) -> tuple[str, dict[str, Any]]:
    """``algorithm: NAME`` with ``algorithm_options: {...}``, or ``algorithm: {name: NAME, option: value}``."""
    if isinstance(value, dict):
        if options:
            raise InvalidArgument("give the algorithm's options either in 'algorithm' or in 'algorithm_options', not both")
        options = {k: v for k, v in value.items() if k != "name"}
        value = value.get("name")
    if not isinstance(value, str):
        raise InvalidArgument(f"algorithm must be a name, got {str(value)[:60]!r}")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidArgument(f"algorithm_options must be a mapping, got {str(options)[:60]!r}")
    return value, _plain_json("algorithm_options", options)


def spec_to_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as plain JSON data with the spec's field names (what the store keeps)."""
    return {f: getattr(spec, f) for f in _FIELDS}


def spec_to_json(spec: ExperimentSpec) -> str:
    return canonical_json(spec_to_dict(spec))


def spec_from_json(text: str) -> ExperimentSpec:
    return parse_spec(json.loads(text))


def load_spec_file(path: str | Path, *, name: str | None = None) -> ExperimentSpec:
    """Read a YAML or JSON config file, or a shipped config by name, and validate it."""
    from configs import load_config

    try:
        data = load_config(path)
    except AmoebaError as exc:
        raise InvalidArgument(str(exc)) from None
    return parse_spec(data, name=name)


def experiment_context(spec: ExperimentSpec) -> tuple[Space, Algorithm[Any], Objective, LatencySettings]:
    """The space, algorithm, objective and latency settings an experiment's validated spec names."""
    space = spaces.get(spec.space)
    objective = build_objective(spec.objective)
    config = EvolutionConfig(spec.population_size, spec.sample_size, spec.algorithm, spec.seed,
                             "pareto" if objective.selection == "pareto" else "best", spec.algorithm_options)
    algorithm = config.build(space.codec, space.build_mutation(spec.mutation))
    return space, algorithm, objective, space.latency_settings(dict(objective.latency))
