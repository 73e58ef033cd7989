"""In a sticky experiment with a holdout, a unit stays on its side of the comparison."""

from __future__ import annotations

from bandit_router.client import BanditClient, Reason
from bandit_router.v1 import admin_pb2, experiment_pb2

from .servers import ServerThread


def test_sticky_units_keep_their_arm_and_their_holdout_status(
    embedded_server: ServerThread,
) -> None:
    with BanditClient(embedded_server.target, timeout=5) as client:
        experiment = experiment_pb2.Experiment(
            name="sticky-holdout",
            arms=[experiment_pb2.Arm(name=arm) for arm in ("a", "b", "c")],
            holdout=experiment_pb2.Holdout(share=0.5),
            sticky=experiment_pb2.Sticky(enabled=True),
        )
        experiment.sticky.ttl.FromSeconds(600)
        client.call_admin(
            "CreateExperiment", admin_pb2.CreateExperimentRequest(experiment=experiment)
        )
        first = {unit: client.route("sticky-holdout", unit_id=unit) for unit in map(str, range(40))}
        reasons = {d.reason for d in first.values()}
        # P(all 40 units on one side) = 2 * 0.5^40: both sides occur.
        assert Reason.HOLDOUT in reasons and reasons - {Reason.HOLDOUT}
        for _ in range(5):
            for unit, original in first.items():
                again = client.route("sticky-holdout", unit_id=unit)
                assert again.arm == original.arm
                assert again.propensity == original.propensity
                expected = "HOLDOUT" if original.reason == "HOLDOUT" else "STICKY"
                assert again.reason == expected
                if expected == "HOLDOUT":
                    assert client.reward(again.decision_id, 1.0) == "RECORDED"
