"""``bandit-router promote`` end to end: a real server on a real redis-server, its own log.

The live experiment explores a lot (epsilon-greedy, epsilon 0.5, over arms whose rewards are
Bernoulli 0.2, 0.5, 0.8; warm-start priors make c the greedy arm from the first decision), so
its log's law is a, b: 1/6 and c: 2/3. Candidates are judged at the current statistics, where
c stays greedy: epsilon 0.05 serves c with 1 - 0.05 + 0.05/3 and is worth 0.785; epsilon 1
(uniform) is worth 0.5; the live configuration 0.65.

Statistical check: a DR term is pi(m) + w (r - m_a), whose variance given the logged law mu
is sum_a pi_a^2 sigma_a^2 / mu_a (sigma_a^2 = p_a (1 - p_a)) when the reward model m is
right. Averaged over the logged decisions and divided by n it gives the standard error; the
estimates must be within Z_TOL = 4 of them of the truth (false alarm ~6e-5 per check).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bandit_router.cli import main as cli_main
from bandit_router.client import BanditClient
from bandit_router.v1 import experiment_pb2

from .servers import RedisServer
from .test_controls_helpers import SeededServer, create, stop_thread

pytestmark = pytest.mark.integration

MEANS = {"a": 0.2, "b": 0.5, "c": 0.8}
PRIORS = (("a", 20.0, 4.0), ("b", 20.0, 10.0), ("c", 20.0, 16.0))
DECISIONS = 1200
Z_TOL = 4.0


def routed(client: BanditClient, name: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        decision = client.route(name)
        client.reward(decision.decision_id, float(rng.random() < MEANS[decision.arm]))
    deadline = time.monotonic() + 10
    while sum(1 for _ in client.export_decisions(name)) < count:  # written a linger later
        assert time.monotonic() < deadline, "the decision log never caught up"
        time.sleep(0.05)


class Promote:
    """The running server with its logged experiments, and ``bandit-router`` in process."""

    def __init__(self, server: SeededServer, client: BanditClient, tmp: Path) -> None:
        self.server, self.client, self.tmp = server, client, tmp
        self.logged_at = time.time()

    def __call__(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli_main([*argv, "--target", self.server.target])
        out = capsys.readouterr()
        return code, out.out, out.err

    def candidate(self, epsilon: float, name: str = "promo", **extra: object) -> str:
        entry: dict[str, object] = {
            "name": name,
            "arms": [{"name": a, "prior_n": n, "prior_sum": s} for a, n, s in PRIORS],
            "policy": {"name": "epsilon_greedy", "params": {"epsilon": epsilon}},
            "reward_window": "10m",
            **extra,
        }
        path = self.tmp / f"candidate-{name}-{epsilon}-{len(extra)}.yaml"
        path.write_text(yaml.safe_dump({"experiments": [entry]}))
        return str(path)

    def live(self, name: str = "promo") -> experiment_pb2.Experiment:
        return self.client.get_experiment(name).experiment

    def restore(self) -> None:
        """The exploring configuration back (statistics are untouched by updates)."""
        live = self.live()
        if live.policy.params["epsilon"] != 0.5:
            live.policy.params["epsilon"] = 0.5
            self.client.update_experiment(live, update_mask=["policy"], reason="test restore")


@pytest.fixture(scope="module")
def promote(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Promote]:
    redis_server.flush()
    server = SeededServer(20261205, redis_url=redis_server.url, refresh_interval=0.05).start()
    try:
        with BanditClient(server.target, timeout=10, max_attempts=1) as client:
            policy = experiment_pb2.PolicySpec(name="epsilon_greedy", params={"epsilon": 0.5})
            create(client, "promo", PRIORS, policy=policy)
            create(client, "promo-small", PRIORS, policy=policy)
            routed(client, "promo", DECISIONS, seed=1)
            routed(client, "promo-small", 100, seed=2)
            yield Promote(server, client, tmp_path_factory.mktemp("promote"))
    finally:
        stop_thread(server)


def law(epsilon: float) -> list[float]:
    """Epsilon-greedy with c greedy, over three arms."""
    return [epsilon / 3, epsilon / 3, 1 - epsilon + epsilon / 3]


def standard_error(client: BanditClient, name: str, target: list[float]) -> float:
    """sqrt(mean_i sum_a pi_a^2 sigma_a^2 / mu_ia / n), mu_i each decision's logged law."""
    terms = []
    for record in client.export_decisions(name):
        mu = record.probabilities
        terms.append(
            sum(
                p * p * MEANS[a] * (1 - MEANS[a]) / mu[a]
                for a, p in zip("abc", target, strict=True)
            )
        )
    return math.sqrt(sum(terms) / len(terms) / len(terms))


def check_estimate(document: dict[str, object], which: str, epsilon: float, se: float) -> None:
    part = document[which]
    assert isinstance(part, dict)
    assert list(part["law"].values()) == pytest.approx(law(epsilon), abs=1e-12)
    truth = sum(p * MEANS[a] for a, p in zip("abc", law(epsilon), strict=True))
    dr = part["estimates"]["dr"]
    assert abs(dr["value"] - truth) <= Z_TOL * se, (which, dr, truth, se)
    assert dr["ci95_low"] < dr["value"] < dr["ci95_high"]
    assert part["support"]["share"] == 1.0


def test_better_candidate_is_applied_and_audited(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    promote.restore()
    before = promote.live()
    code, out, err = promote(
        capsys,
        "promote",
        "promo",
        "--candidate",
        promote.candidate(0.05),
        "-o",
        "json",
        "--reason",
        "less exploration",
    )
    assert code == 0, out + err
    document = json.loads(out)
    assert document["verdict"] == "apply" and document["action"] == "applied"
    assert document["evaluated_decisions"] == DECISIONS
    check_estimate(document, "candidate", 0.05, standard_error(promote.client, "promo", law(0.05)))
    check_estimate(document, "current", 0.5, standard_error(promote.client, "promo", law(0.5)))
    after = promote.live()
    assert after.policy.params["epsilon"] == 0.05 and after.version == before.version + 1
    entry = promote.client.list_audit("promo", limit=1)[0]
    assert entry.action == "update"
    assert entry.reason.startswith("promote: candidate DR ") and "less exploration" in entry.reason
    assert json.loads(entry.arguments)["fields"] == ["policy"]


def test_worse_candidate_is_refused_and_changes_nothing(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    promote.restore()
    before = promote.live()
    audit = len(promote.client.list_audit("promo"))
    code, out, err = promote(capsys, "promote", "promo", "--candidate", promote.candidate(1.0))
    assert code == 3, out + err
    assert "verdict: refuse" in out and "does not beat the current configuration" in out
    assert "action: refused" in out
    assert promote.live() == before
    assert len(promote.client.list_audit("promo")) == audit


def test_dry_run_changes_nothing(promote: Promote, capsys: pytest.CaptureFixture[str]) -> None:
    promote.restore()
    before = promote.live()
    code, out, err = promote(
        capsys, "promote", "promo", "--candidate", promote.candidate(0.05), "--dry-run"
    )
    assert code == 0, out + err
    assert "verdict: apply" in out and "action: would apply (dry run)" in out
    assert promote.live() == before
    code, out, _ = promote(
        capsys, "promote", "promo", "--candidate", promote.candidate(1.0), "--dry-run"
    )
    assert code == 3 and "action: refused" in out


def test_force_applies_a_refused_candidate_and_says_so(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    promote.restore()
    code, out, err = promote(
        capsys, "promote", "promo", "--candidate", promote.candidate(1.0), "--force"
    )
    assert code == 0, out + err
    assert "verdict: refuse (overridden by --force)" in out and "action: applied" in out
    assert promote.live().policy.params["epsilon"] == 1.0
    entry = promote.client.list_audit("promo", limit=1)[0]
    assert entry.reason.startswith("promote FORCED (gate refused): candidate DR ")
    promote.restore()


def test_too_little_log_is_refused_with_the_minimum(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    before = promote.live("promo-small")
    code, out, err = promote(
        capsys,
        "promote",
        "promo-small",
        "--candidate",
        promote.candidate(0.05, name="promo-small"),
    )
    assert code == 3, out + err
    assert "too little log: 100 decisions with a reward in the window" in out
    assert "needs at least 1000" in out
    assert promote.live("promo-small") == before


def test_changed_arms_are_refused_even_when_forced(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    promote.restore()
    path = promote.tmp / "more-arms.yaml"
    entry = yaml.safe_load(Path(promote.candidate(0.05)).read_text())
    entry["experiments"][0]["arms"].append({"name": "d"})
    path.write_text(yaml.safe_dump(entry))
    before = promote.live()
    code, out, _ = promote(capsys, "promote", "promo", "--candidate", str(path), "--force")
    assert code == 3
    assert "the candidate changes the arms (adds d)" in out
    assert "verdict: refuse\n" in out and "action: refused" in out
    assert promote.live() == before


@pytest.mark.parametrize(
    "text",
    [
        "experiments: [{name: promo, arms: [a, b, c], policy: {name: epsilon_greedy, "
        "params: {epsilon: 2}}}]",
        "experiments: [{name: promo, arms: [a, b, c], policy: no_such_policy}]",
        "experiments: [{name: promo, arms: [a, a]}]",
        "experiments: [{name: promo, arms: [a, b, c], colour: blue}]",
        "experiments: [{name: promo, arms: [a, b, c]",
        None,  # a file that does not exist
    ],
)
def test_bad_candidate_files_give_the_messages_of_create(
    promote: Promote, capsys: pytest.CaptureFixture[str], text: str | None
) -> None:
    path = promote.tmp / "bad.yaml"
    path.unlink(missing_ok=True)
    if text is not None:
        path.write_text(text)
    code, out, err = promote(capsys, "promote", "promo", "--candidate", str(path))
    create_code, _, create_err = promote(capsys, "create", "-f", str(path), "--dry-run")
    assert (code, create_code) == (2, 2)
    assert err == create_err and err.startswith("error: ") and out == ""


def test_candidate_for_another_experiment_is_an_error(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = promote(
        capsys, "promote", "promo", "--candidate", promote.candidate(0.05, name="other")
    )
    assert code == 2 and out == ""
    assert "exactly one experiment named 'promo'; found 'other'" in err


def test_server_errors_are_exit_status_2(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = promote(
        capsys, "promote", "nowhere", "--candidate", promote.candidate(0.05, name="nowhere")
    )
    assert code == 2 and out == ""
    assert err.startswith("error: NOT_FOUND: ")


def test_window_and_exported_log(promote: Promote, capsys: pytest.CaptureFixture[str]) -> None:
    """--log reads an export through the same evaluation; --window leaves older decisions out."""
    promote.restore()
    log = promote.tmp / "promo.jsonl"
    assert promote(capsys, "export", "promo", "--out", str(log))[0] == 0
    candidate = promote.candidate(0.05)
    documents = []
    for source in ([], ["--log", str(log)]):
        code, out, err = promote(
            capsys,
            "promote",
            "promo",
            "--candidate",
            candidate,
            "--dry-run",
            "-o",
            "json",
            *source,
        )
        assert code == 0, out + err
        documents.append(json.loads(out))
    assert documents[0]["candidate"] == documents[1]["candidate"]
    assert documents[0]["current"] == documents[1]["current"]
    time.sleep(max(0.0, promote.logged_at + 2.5 - time.time()))
    for source in ([], ["--log", str(log)]):
        code, out, _ = promote(
            capsys, "promote", "promo", "--candidate", candidate, "--window", "1s", *source
        )
        assert code == 3
        assert "too little log: 0 decisions with a reward in the window" in out


# -- contextual candidates ------------------------------------------------------------------
#
# A plain uniform experiment (epsilon_greedy, epsilon 1) whose requests carry one of three
# segments (context seg0/seg1/seg2 = 1); in segment s arm s earns Bernoulli(0.8), the others
# Bernoulli(0.2). Its log is written by the test (promote --log reads an export), so the
# statistics need no 2,000 live pairs; the server supplies the configuration and the
# statistics, and applies the update. True values are computed here from the policies' own
# laws at the statistics promote must use, and the DR estimates must be within Z_TOL standard
# errors of them (the same formula as above, per decision).

SEGMENTS = 3
CONTEXT_LOG = 2200
SEGMENT_FEATURES = [{"name": f"seg{s}"} for s in range(SEGMENTS)]


def segment_mean(arm: int, segment: int) -> float:
    return 0.8 if arm == segment else 0.2


def segment_log(path: Path, name: str, seed: int) -> list[int]:
    """A uniformly random log of CONTEXT_LOG decisions; returns each decision's segment."""
    from simulations.logs import DecisionRecord, write_decision_log

    rng = random.Random(seed)
    segments, records = [], []
    for i in range(CONTEXT_LOG):
        segment, arm = rng.randrange(SEGMENTS), rng.randrange(3)
        segments.append(segment)
        records.append(
            DecisionRecord(
                decision_id=f"{name}-{i}",
                experiment=name,
                arm="abc"[arm],
                propensity=1 / 3,
                context={f"seg{segment}": 1.0},
                reward=float(rng.random() < segment_mean(arm, segment)),
                probabilities=dict.fromkeys("abc", 1 / 3),
                probabilities_complete=True,
            )
        )
    write_decision_log(records, path)
    return segments


def contextual_candidate(tmp: Path, name: str, policy: dict[str, object]) -> str:
    entry = {
        "name": name,
        "arms": ["a", "b", "c"],
        "policy": policy,
        "reward_window": "10m",
        "context_features": SEGMENT_FEATURES,
    }
    path = tmp / f"candidate-{name}-{policy['name']}.yaml"
    path.write_text(yaml.safe_dump({"experiments": [entry]}))
    return str(path)


def check_contextual(part: dict[str, object], laws: list[list[float]], segments: list[int]) -> None:
    """DR within Z_TOL standard errors of sum_i sum_a pi_a(x_i) mean(a, seg_i) / n."""
    truth = sum(sum(p * segment_mean(a, s) for a, p in enumerate(laws[s])) for s in segments) / len(
        segments
    )
    variance = sum(
        sum(
            p * p * segment_mean(a, s) * (1 - segment_mean(a, s)) * 3 for a, p in enumerate(laws[s])
        )
        for s in segments
    ) / len(segments)
    se = math.sqrt(variance / len(segments))
    dr = part["estimates"]["dr"]  # type: ignore[index]
    assert abs(dr["value"] - truth) <= Z_TOL * se, (dr, truth, se)
    assert part["support"]["share"] == 1.0  # type: ignore[index]


def test_contextual_candidates_plain_to_lin_ts_with_a_reset_then_new_parameters(
    promote: Promote, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from policies import create_policy
    from policies.contextual import ContextualStats

    name = "promo-ctx"
    policy = experiment_pb2.PolicySpec(name="epsilon_greedy", params={"epsilon": 1.0})
    create(promote.client, name, ("a", "b", "c"), policy=policy)
    log = promote.tmp / "segments.jsonl"
    segments = segment_log(log, name, seed=3)
    one_hot = np.eye(SEGMENTS + 1)[1:] + np.eye(SEGMENTS + 1)[0]  # x of segment s: [1, e_s]

    # 1. plain -> lin_ts: no service statistics apply; fitted on the log's first half.
    candidate = contextual_candidate(promote.tmp, name, {"name": "lin_ts"})
    code, out, err = promote(
        capsys, "promote", name, "--candidate", candidate, "--log", str(log), "-o", "json"
    )
    assert code == 0, out + err
    document = json.loads(out)
    half = CONTEXT_LOG // 2
    assert document["statistics_reset"] and document["fitted_on_decisions"] == half
    assert document["action"] == "applied with a statistics reset"
    assert document["evaluated_decisions"] == CONTEXT_LOG - half
    assert "applying resets the statistics" in err and "fitted on the log's first" in err
    fitted = ContextualStats.zeros(3, SEGMENTS + 1)
    with log.open() as handle:
        rows = [json.loads(line) for line in handle][:half]
    for row, segment in zip(rows, segments, strict=False):
        arm, x = "abc".index(row["arm"]), one_hot[segment]
        fitted.n[arm] += 1
        fitted.gram[arm] += np.outer(x, x)
        fitted.b[arm] += row["reward"] * x
    lin_ts = create_policy("lin_ts", {}, contextual=True)
    check_contextual(
        document["candidate"], lin_ts.probabilities(fitted, one_hot).tolist(), segments[half:]
    )
    check_contextual(document["current"], [[1 / 3] * 3] * SEGMENTS, segments[half:])
    live = promote.client.get_experiment(name)
    assert live.experiment.policy.name == "lin_ts"
    assert all(s.n == 0 and list(s.gram) == [0.0] * 16 for s in live.statistics)
    entry = promote.client.list_audit(name, limit=1)[0]
    assert "statistics reset" in entry.reason

    # 2. lin_ts -> lin_ucb: evaluated at the service's current statistics (A, b), no reset.
    rng = random.Random(4)
    for _ in range(150):
        segment = rng.randrange(SEGMENTS)
        decision = promote.client.route(name, context={f"seg{segment}": 1.0})
        arm = "abc".index(decision.arm)
        promote.client.reward(
            decision.decision_id, float(rng.random() < segment_mean(arm, segment))
        )
    statistics = promote.client.get_experiment(name).statistics
    assert sum(s.n for s in statistics) == 150
    current = ContextualStats(
        np.asarray([s.n for s in statistics]),
        np.asarray([list(s.gram) for s in statistics]).reshape(3, 4, 4),
        np.asarray([list(s.b) for s in statistics]),
    )
    candidate = contextual_candidate(
        promote.tmp, name, {"name": "lin_ucb", "params": {"alpha": 0.5}}
    )
    code, out, err = promote(
        capsys,
        "promote",
        name,
        "--candidate",
        candidate,
        "--log",
        str(log),
        "--dry-run",
        "-o",
        "json",
    )
    assert code in (0, 3), out + err
    document = json.loads(out)
    assert not document["statistics_reset"] and document["fitted_on_decisions"] == 0
    assert document["evaluated_decisions"] == CONTEXT_LOG
    lin_ucb = create_policy("lin_ucb", {"alpha": 0.5}, contextual=True)
    check_contextual(
        document["candidate"], lin_ucb.probabilities(current, one_hot).tolist(), segments
    )
    check_contextual(document["current"], lin_ts.probabilities(current, one_hot).tolist(), segments)
    after = promote.client.get_experiment(name).statistics  # a dry run: nothing reset
    assert [(s.n, list(s.gram), list(s.b)) for s in after] == [
        (s.n, list(s.gram), list(s.b)) for s in statistics
    ]
