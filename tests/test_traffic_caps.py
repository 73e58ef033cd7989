"""Traffic caps (``exploration.max_share``) over a real gRPC channel and a real redis-server.

Arm ``a`` is by far the best (its prior says so), so uncapped Thompson sampling would send it
nearly everything; capped at 0.2, Route draws from the capped law and logs it. The law of
the state is constant (no rewards), so the 5,000 decisions are i.i.d.: a's count is
Binomial(5000, 0.2), and for every arm the count minus 5000 x its logged probability is a
sum of centred Bernoullis with variance 5000 q (1 - q). Both are checked at z = 5 (two-sided
level 6e-7); the logged probability of ``a`` is exactly the cap.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bandit_router.client import BanditClient
from bandit_router.errors import InvalidArgument
from bandit_router.operations.experiment_files import experiment_to_mapping, experiments_from_text
from bandit_router.v1 import experiment_pb2 as pb

from .servers import ServerThread

pytestmark = pytest.mark.integration

ROUTES = 5000
CAP = 0.2
Z = 5.0


@pytest.fixture
def client(redis_backed_server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(redis_backed_server.target, timeout=5, max_attempts=1) as c:
        yield c


def test_a_capped_best_arm_gets_its_cap_and_the_log_says_so(client: BanditClient) -> None:
    client.create_experiment(
        pb.Experiment(
            name="caps",
            arms=[
                pb.Arm(name="a", prior_n=200, prior_sum=180),
                pb.Arm(name="b", prior_n=200, prior_sum=100),
                pb.Arm(name="c", prior_n=200, prior_sum=90),
            ],
            policy=pb.PolicySpec(name="thompson"),
            exploration=pb.ExplorationControls(max_share={"a": CAP}),
        )
    )
    time.sleep(0.15)  # two cache refreshes
    decisions = [client.route("caps") for _ in range(ROUTES)]
    counts = Counter(d.arm for d in decisions)
    bound = Z * math.sqrt(ROUTES * CAP * (1 - CAP))
    assert abs(counts["a"] - ROUTES * CAP) <= bound, counts
    assert all(d.propensity == CAP for d in decisions if d.arm == "a")
    time.sleep(0.3)  # the recorder's flush
    records = {r.decision_id: r for r in client.export_decisions("caps")}
    assert set(records) == {d.decision_id for d in decisions}
    for arm in ("a", "b", "c"):
        logged = [records[d.decision_id].probabilities[arm] for d in decisions]
        mean = sum(logged) / ROUTES
        spread = Z * math.sqrt(ROUTES * mean * (1 - mean))
        assert abs(counts[arm] - ROUTES * mean) <= spread, (arm, counts, mean)
    assert {records[d.decision_id].probabilities["a"] for d in decisions} == {CAP}
    assert all(records[d.decision_id].probabilities_complete for d in decisions)
    shown = client.get_experiment("caps").experiment.exploration.max_share
    assert dict(shown) == {"a": CAP}


def test_files_declare_caps_and_name_a_bad_one() -> None:
    text = """
experiments:
  - name: caps
    arms: [a, b]
    exploration: {max_share: {a: 0.1}}
"""
    (experiment,) = experiments_from_text(text, "caps.yaml")
    assert experiment.max_share == {"a": 0.1}
    assert experiment_to_mapping(experiment)["exploration"] == {"max_share": {"a": 0.1}}
    for bad, field in [
        ("{max_share: {z: 0.1}}", "exploration.max_share[z]"),
        ("{max_share: {a: 2}}", "exploration.max_share[a]"),
        ("{max_share: {a: x}}", "exploration.max_share[a]"),
        ("{max_share: 0.1}", "exploration.max_share"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            experiments_from_text(text.replace("{max_share: {a: 0.1}}", bad), "caps.yaml")
        assert raised.value.field.endswith(field), raised.value.field
