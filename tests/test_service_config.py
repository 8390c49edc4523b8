"""Experiment config files: the documented keys and aliases, defaults, one-line errors, shipped configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import spaces
from configs import ConfigError, load_config, shipped
from domain import InvalidArgument
from orchestrator.config import load_spec_file, parse_spec, spec_from_json, spec_to_json

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {"name": "e1", "space": "nasnet", "population": 10, "sample": 3, "evaluations": 50}


def test_minimal_config_gets_documented_defaults() -> None:
    spec = parse_spec(BASE)
    assert (spec.population_size, spec.sample_size, spec.evaluations, spec.seed, spec.algorithm) == (10, 3, 50, 0, "aging")
    assert (spec.algorithm_options, spec.mutation) == ({}, spaces.get("nasnet").default_mutation)
    assert spec.objective == {"kind": "accuracy"}
    assert (spec.training, spec.lease_timeout_s, spec.max_attempts) == ({}, 60.0, 3)
    assert spec_from_json(spec_to_json(spec)) == spec


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yml = tmp_path / "e.yaml"
    yml.write_text("name: e2\nspace: nb201\npopulation: 20\nsample: 5\nevaluations: 300\nseed: 4\n"
                   "algorithm: non-aging\nobjective: {kind: mnas, target_ms: 2.0}\ntraining: {table: {sleep_s: 0}}\n"
                   "lease_timeout_s: 30\nmax_attempts: 5\n")
    spec = load_spec_file(yml)
    assert (spec.name, spec.space, spec.algorithm, spec.seed, spec.max_attempts) == ("e2", "nb201", "non-aging", 4, 5)
    assert spec.objective["kind"] == "mnas" and spec.objective["target_ms"] == 2.0
    assert spec.training == {"table": {"sleep_s": 0}}
    js = tmp_path / "e.json"
    js.write_text('{"name": "e3", "space": "nb201", "population_size": 2, "sample_size": 1, "evaluations": 3}')
    assert load_spec_file(js, name="renamed").name == "renamed"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"populaton": 3}, "unknown config key 'populaton'"),
        ({"population": 0}, "population_size must be between 1"),
        ({"sample": "3"}, "sample_size must be an integer"),
        ({"evaluations": True}, "evaluations must be an integer"),
        ({"space": "resnet"}, "unknown search space 'resnet'; expected one of edgetpu, lse, nasnet, nb201"),
        ({"name": "has space"}, "experiment name must be"),
        ({"algorithm": "greedy"}, "algorithm: unknown algorithm 'greedy'; expected one of aging, fixed, guided, non-aging, "
                                  "pairwise, random, rl"),
        # The space's registry holds only its own leaves: another space's leaf is unknown to it.
        ({"mutation": {"type": "edge_op"}},
         "mutation: unknown mutation type 'edge_op'; expected one of hidden_state, op, identity, choice, chain, "
         "until_changed"),
        ({"objective": {"kind": "mnas"}}, "objective: the mnas objective needs a positive target_ms"),
        ({"training": [1]}, "training must be a mapping"),
        ({"lease_timeout_s": float("nan")}, "lease_timeout_s must be a number"),
        ({"lease_timeout_s": 0}, "lease_timeout_s must be between"),
        ({"max_attempts": 0}, "max_attempts must be between 1"),
        ({"seed": -1}, "seed must be between 0"),
        ({"population_size": 4}, "given twice"),
    ],
)
def test_bad_configs_give_one_clear_line(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_spec({**BASE, **change})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_keys_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="config needs 'evaluations'"):
        parse_spec({k: v for k, v in BASE.items() if k != "evaluations"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InvalidArgument, match="not valid YAML/JSON at line"):
        load_spec_file(bad)
    with pytest.raises(InvalidArgument, match=r"no config file .*absent\.yaml.* and no shipped config"):
        load_spec_file(tmp_path / "absent.yaml")
    # A shipped config is found by name, as `amoeba up --config` finds it.
    assert load_spec_file("nb201-table").name == "nb201-table"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe n\x00a\x00")
    with pytest.raises(InvalidArgument, match="is not UTF-8 text"):
        load_spec_file(binary)
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: x\n" + "#" * (1024 * 1024 + 1))
    with pytest.raises(InvalidArgument, match="at most 1,048,576"):
        load_spec_file(huge)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(InvalidArgument, match="nested too deeply"):
        load_spec_file(deep)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ["name: bomb", "space: nb201", "population: 3", "sample: 2", "evaluations: 5", "training:",
             '  a: &a ["x","x","x","x","x","x","x","x","x"]']
    previous = "a"
    for level in "bcdefgh":  # 9^8 = 43 million strings once expanded
        lines.append(f"  {level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = level
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidArgument, match="more than 20,000 values"):
        load_spec_file(bomb)
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("name: many\nspace: nb201\npopulation: 3\nsample: 2\nevaluations: 5\ntraining:\n"
                       "  a: &a 1\n  b: [" + ", ".join(["*a"] * 101) + "]\n")
    with pytest.raises(InvalidArgument, match="more than 100 YAML aliases"):
        load_spec_file(aliases)


def test_a_spec_too_large_for_a_work_message_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="fit in the work messages"):
        parse_spec({**BASE, "training": {"blob": "x" * 300_000}})
    with pytest.raises(InvalidArgument, match="nested more than 32 levels"):
        nested: dict[str, object] = {}
        node = nested
        for _ in range(40):
            node["x"] = {}
            node = node["x"]  # type: ignore[assignment]
        parse_spec({**BASE, "training": nested})


def test_training_table_columns_are_checked_when_the_experiment_is_created() -> None:
    nb201 = {**BASE, "space": "nb201"}
    with pytest.raises(InvalidArgument, match=r"training\.table\.column 'nonexistent' is not a column of the nb201 table"):
        parse_spec({**nb201, "training": {"table": {"column": "nonexistent"}}})
    with pytest.raises(InvalidArgument, match="no tabular benchmark"):
        parse_spec({**BASE, "training": {"table": {}}})
    with pytest.raises(InvalidArgument, match="unknown keys: colum"):
        parse_spec({**nb201, "training": {"table": {"colum": "c10v_valid_acc_12ep"}}})
    assert parse_spec({**nb201, "training": {"table": {"column": "c10v_valid_acc_200ep"}}}).training["table"]


def test_shipped_configs_load_by_name_or_path() -> None:
    assert "nb201-table" in shipped()
    spec = parse_spec(load_config("nb201-table"))
    assert (spec.space, spec.population_size, spec.sample_size, spec.evaluations) == ("nb201", 20, 5, 300)
    for name in shipped():
        parse_spec(load_config(name))
    path = Path(__file__).parents[1] / "configs" / "nb201-table.yaml"
    assert load_config(str(path)) == load_config("nb201-table")
    with pytest.raises(ConfigError, match="no shipped config"):
        load_config("no-such-config")
