"""``amoeba lineage``: the chain of ancestors of an individual from its seed, with the mutation at each step and
each accuracy, as text and JSON, read-only from a copied database; bad input is one line and a non-zero exit."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

import spaces
from cli.main import main
from orchestrator.service import open_service
from tests.builders import Clock
from tests.lse_builders import lse_spec, run_pairwise

pytestmark = pytest.mark.service


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from db import upgrade

    folder = tmp_path_factory.mktemp("lineage")
    url = f"sqlite:///{folder / 'lse.db'}"
    upgrade(url)
    service = open_service(url, clock=Clock())
    run_pairwise(service, lse_spec(population=5, evaluations=40), workers=2)
    service.store.close()
    target = folder / "copy.db"
    shutil.copyfile(folder / "lse.db", target)
    return target


def _deepest(path: Path, capsys: pytest.CaptureFixture[str]) -> int:
    code, out, _ = _run(capsys, "replay", "--db", str(path), "--export", str(path.parent / "export"), "--json")
    assert code == 0
    lineage = json.loads(Path(json.loads(out)["files"]["lineage_json"]).read_text())
    return int(lineage[0]["proposal_seq"])


def test_the_chain_runs_from_the_trivial_seed_to_the_individual(copied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    best = _deepest(copied, capsys)
    code, out, err = _run(capsys, "lineage", "--db", str(copied), "--experiment", "lse", "--seq", str(best), "--json")
    assert code == 0, err
    doc = json.loads(out)
    chain = doc["chain"]
    assert doc["experiment"] == "lse" and doc["seq"] == best and doc["generations"] == len(chain) - 1 >= 1
    assert chain[0]["parent_seq"] is None and chain[0]["mutation"] == "seed" and chain[0]["proposal_seq"] < 5
    assert spaces.get("lse").parse(chain[0]["genome"]) == spaces.named_genome("lse-seed")
    assert chain[-1]["proposal_seq"] == best
    for parent, child in itertools.pairwise(chain):
        assert child["parent_seq"] == parent["proposal_seq"] and child["generation"] == parent["generation"] + 1
        assert child["mutation"] and isinstance(child["accuracy"], float)
    assert [c["generation"] for c in chain] == list(range(len(chain)))
    code, out, err = _run(capsys, "lineage", "--db", str(copied), "--seq", str(best))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"lse: individual {best} and its {len(chain) - 1} ancestors, oldest first"
    assert "seed" in lines[2] and "in; lr 0.1" in lines[2] and len(lines) == 2 + len(chain)
    assert lines[-1].split()[1] == str(best)


def test_a_seed_is_its_own_whole_lineage(copied: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "lineage", "--db", str(copied), "--seq", "0", "--json")
    assert code == 0 and json.loads(out)["generations"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (("--seq", "4000"), "has no individual 4000 (its proposals are 0.."),
    (("--seq", "-1"), "--seq must be a proposal number"),
    (("--seq", "3", "--experiment", "nope"), "no experiment named 'nope'"),
    (("--seq", "x"), "Invalid value for '--seq'"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(copied: Path, capsys: pytest.CaptureFixture[str],
                                                   args: tuple[str, ...], message: str) -> None:
    code, out, err = _run(capsys, "lineage", "--db", str(copied), *args)
    assert code != 0 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_missing_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "lineage", "--db", str(tmp_path / "none.db"), "--seq", "1")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "amoeba: error:" in err
