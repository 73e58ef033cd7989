"""Study files: the examples load, bad files name their field and line, the CLI exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulations.cli import main
from simulations.contextual_environments import ContextualEnvironment
from simulations.environments import Drifting, GeometricDelay, PiecewiseStationary
from simulations.runner import run_study
from simulations.study import StudyError, load_study, parse_study

STUDIES = Path(__file__).resolve().parent.parent / "simulations" / "studies"

GOOD = """\
name: tiny
horizon: 300
runs: 20
seed: 3
environment:
  type: bernoulli
  means: [0.7, 0.5, 0.3]
  cost: [1, 2, 3]
policies:
  - name: thompson
  - name: epsilon_greedy
    params: {epsilon: 0.2}
"""


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(STUDIES.iterdir()), ids=lambda p: p.name)
def test_example_studies_load(path: Path) -> None:
    study = load_study(path)
    assert study.policies and study.horizon > 0


def test_examples_cover_the_required_scenarios() -> None:
    studies = {p.stem: load_study(p) for p in STUDIES.iterdir()}
    plain = {
        stem: s.environment
        for stem, s in studies.items()
        if not isinstance(s.environment, ContextualEnvironment)
    }
    means = {tuple(env.means.initial) for env in plain.values()}
    assert (0.9, 0.8) in means
    assert (0.1, 0.05, 0.05, 0.05, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01) in means
    assert (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9) in means
    assert isinstance(plain["delayed"].delay, GeometricDelay)
    assert isinstance(plain["piecewise"].means, PiecewiseStationary)
    assert isinstance(plain["drifting"].means, Drifting)


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        (GOOD.replace("  means: [0.7, 0.5, 0.3]\n", ""), "environment.means", 5),
        (GOOD.replace("[0.7, 0.5, 0.3]", "[0.7, 1.5, 0.3]"), "environment.means[1]", 7),
        (GOOD.replace("name: epsilon_greedy", "name: softmax"), "policies[1].name", 11),
        (GOOD.replace("epsilon: 0.2", "epsilon: 2"), "policies[1].params.epsilon", 12),
        (GOOD.replace("epsilon: 0.2", "epsilon: '0.2'"), "policies[1].params.epsilon", 12),
        (GOOD.replace("horizon: 300", "horizon: -5"), "horizon", 2),
        (GOOD.replace("runs: 20", "runs: 20\ncolour: blue"), "colour", 4),
        (GOOD.replace("cost: [1, 2, 3]", "cost: [1, 2]"), "environment.cost", 8),
        (GOOD.replace("type: bernoulli", "type: poisson"), "environment.type", 6),
    ],
)
def test_bad_yaml_names_field_and_line(tmp_path: Path, text: str, field: str, line: int) -> None:
    with pytest.raises(StudyError) as caught:
        load_study(write(tmp_path, text))
    assert caught.value.field == field
    assert caught.value.line == line


def test_gaussian_environment_rejects_bernoulli_policy() -> None:
    data = {
        "horizon": 10,
        "environment": {"type": "gaussian", "means": [0.0, 1.0]},
        "policies": [{"name": "thompson"}],
    }
    with pytest.raises(StudyError) as caught:
        parse_study(data)
    assert caught.value.field == "policies[0].name"


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    with pytest.raises(StudyError) as caught:
        load_study(write(tmp_path, GOOD.replace("  means: [0.7, 0.5, 0.3]", "  means: [0.7, 0.5")))
    assert caught.value.line is not None and caught.value.line >= 7


def test_toml_errors_name_field(tmp_path: Path) -> None:
    text = 'horizon = 10\n[environment]\nmeans = [0.5, 0.4]\ndelay = {type = "uniform", low = 5}\n'
    text += '[[policies]]\nname = "thompson"\n'
    with pytest.raises(StudyError) as caught:
        load_study(write(tmp_path, text, "s.toml"))
    assert caught.value.field == "environment.delay.high"
    with pytest.raises(StudyError) as caught:
        load_study(write(tmp_path, "horizon = = 3\n", "t.toml"))
    assert caught.value.line == 1


def test_study_runs_and_reports(tmp_path: Path) -> None:
    study = load_study(write(tmp_path, GOOD))
    result = run_study(study)
    assert [r.label for r in result.results] == ["thompson", "epsilon_greedy(epsilon=0.2)"]
    for run in result.results:
        assert run.regret.shape == (20, run.steps.size) and run.steps[-1] == 300
        assert run.allocation.sum(axis=1) == pytest.approx(1.0)
        assert run.cost is not None and (run.cost >= 1.0).all() and (run.cost <= 3.0).all()


def test_cli_simulate_writes_json_and_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = write(tmp_path, GOOD)
    status = main(["simulate", str(study), "--out", str(tmp_path / "out"), "--runs", "10"])
    assert status == 0
    out = capsys.readouterr().out
    assert "Lai-Robbins" in out and "thompson" in out
    summary = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert summary["runs"] == 10
    bound = summary["lai_robbins"]
    assert bound["constant"] > 0 and bound["at_horizon"] == pytest.approx(
        bound["constant"] * __import__("math").log(300)
    )
    policy = summary["policies"][0]
    assert len(policy["curve"]["steps"]) == len(policy["curve"]["mean"])
    assert set(policy["final_allocation"]) == {"arm0", "arm1", "arm2"}
    png = (tmp_path / "out" / "tiny.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_cli_bad_study_exits_2_without_traceback(tmp_path: Path) -> None:
    study = write(tmp_path, GOOD.replace("name: epsilon_greedy", "name: softmax"))
    proc = subprocess.run(
        [sys.executable, "-m", "simulations", "simulate", str(study), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{study}:11: policies[1].name" in proc.stderr
