"""Reward semantics of the store's Lua scripts, on the embedded store (fakeredis + Lua).

Exactly once, late rules, default rewards claimed once by racing sweepers, a reward that
overtakes its decision's pending record, and discounting: the invariants each script states.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from bandit_router.errors import AlreadyExists, NotFound
from bandit_router.model.experiments import (
    Arm,
    ContextFeature,
    Experiment,
    LateRewardRule,
    PolicySpec,
)
from bandit_router.route.tokens import new_nonce
from bandit_router.store.keys import EXPERIMENTS, ExperimentKeys
from bandit_router.store.redis_store import (
    FLUSH_NUMBERS_TTL_SECONDS,
    AuditEntry,
    DecisionFlush,
    PendingDecision,
    RewardCommand,
    Store,
)

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    return asyncio.get_event_loop_policy().new_event_loop().run_until_complete(coroutine)


def make_experiment(**changes: Any) -> Experiment:
    base = Experiment(name="exp", arms=(Arm("a"), Arm("b")), default_reward=0.0)
    return base.with_changes(**changes).validated()


def command(
    exp: Experiment,
    nonce: str,
    arm: str,
    value: float,
    *,
    deadline_ms: int | None = None,
    learn: bool = True,
    gamma: float = 1.0,
) -> RewardCommand:
    return RewardCommand(
        experiment=exp.name,
        incarnation=exp.incarnation,
        nonce=nonce,
        arm=arm,
        value=value,
        deadline_ms=deadline_ms if deadline_ms is not None else int(time.time() * 1000) + 60_000,
        late_rule=exp.late_rewards.value,
        learn=learn,
        marker_ttl_ms=600_000,
        gamma=gamma,
    )


_flush_numbers = iter(range(1, 1_000_000))


async def record(
    store: Store, exp: Experiment, pending: list[PendingDecision], counts: dict[str, int]
) -> None:
    """One decision flush of ``exp`` by one writer, numbered as a recorder numbers them."""
    flush = DecisionFlush(exp.name, exp.incarnation, next(_flush_numbers), pending, "", counts)
    assert await store.record_decisions("writer", [flush]) == [None]


async def arm_stats(store: Store, arm: str) -> tuple[float, float, float]:
    state = await store.read_state("exp")
    return state.arm_stat(arm, "n"), state.arm_stat(arm, "sum"), state.arm_stat(arm, "sum_sq")


def test_reward_applies_once_and_duplicates_change_nothing() -> None:
    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        nonce = new_nonce()
        results = await store.apply_rewards([command(exp, nonce, "a", 1.0)] * 3)
        assert results == ["applied", "duplicate", "duplicate"]
        assert await arm_stats(store, "a") == (1.0, 1.0, 1.0)

    run(scenario())


def test_script_refuses_a_value_no_policy_accepts_before_any_write() -> None:
    """Defence in depth below the servicer's check: a non-finite or huge value is 'invalid'
    and leaves no marker, so the same decision's valid reward still applies."""

    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        nonce = new_nonce()
        for value in (float("nan"), float("inf"), 2e154):
            assert await store.apply_rewards([command(exp, nonce, "a", value)]) == ["invalid"]
        assert await arm_stats(store, "a") == (0.0, 0.0, 0.0)
        assert await store.apply_rewards([command(exp, nonce, "a", 1.0)]) == ["applied"]

    run(scenario())


def test_late_rewards_ignored_or_applied_replacing_default() -> None:
    async def scenario(
        rule: LateRewardRule,
    ) -> tuple[list[str | Exception], tuple[float, float, float]]:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment(late_rewards=rule))
        nonce = new_nonce()
        past = int(time.time() * 1000) - 1000
        await record(store, exp, [PendingDecision(nonce, "b", past)], {"b": 1})
        due = await store.due_pending("exp", int(time.time() * 1000), 100)
        assert await store.apply_defaults(exp, due, 600_000, 1.0) == ["b"]
        results = await store.apply_rewards([command(exp, nonce, "b", 1.0, deadline_ms=past)] * 2)
        return results, await arm_stats(store, "b")

    ignored, stats = run(scenario(LateRewardRule.IGNORE))
    assert ignored == ["late_ignored", "late_ignored"]  # the default stands
    assert stats == (1.0, 0.0, 0.0)
    applied, stats = run(scenario(LateRewardRule.APPLY))
    assert applied == ["late_applied", "duplicate"]  # replaces the default, once
    assert stats == (1.0, 1.0, 1.0)


def test_late_reward_without_default_follows_the_rule() -> None:
    async def scenario(rule: LateRewardRule) -> list[str | Exception]:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment(late_rewards=rule, default_reward=None))
        past = int(time.time() * 1000) - 1
        return await store.apply_rewards([command(exp, new_nonce(), "a", 1.0, deadline_ms=past)])

    assert run(scenario(LateRewardRule.IGNORE)) == ["late_ignored"]
    assert run(scenario(LateRewardRule.APPLY)) == ["late_applied"]


def test_racing_sweepers_credit_each_default_exactly_once() -> None:
    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        past = int(time.time() * 1000) - 10
        pending = [PendingDecision(new_nonce(), "ab"[i % 2], past) for i in range(200)]
        await record(store, exp, pending, {})
        # Five replicas read the same due list, then all try to credit it.
        due = await store.due_pending("exp", int(time.time() * 1000), 1000)
        credited = await asyncio.gather(
            *(store.apply_defaults(exp, due, 600_000, 1.0) for _ in range(5))
        )
        assert sum(len(c) for c in credited) == 200
        assert (await arm_stats(store, "a"))[0] + (await arm_stats(store, "b"))[0] == 200
        assert await store.due_pending("exp", int(time.time() * 1000), 1000) == []

    run(scenario())


def test_reward_overtaking_its_pending_record_gets_no_default() -> None:
    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        nonce = new_nonce()
        assert await store.apply_rewards([command(exp, nonce, "a", 1.0)]) == ["applied"]
        past = int(time.time() * 1000) - 10  # the batched write arrives after the reward
        await record(store, exp, [PendingDecision(nonce, "a", past)], {})
        assert await store.due_pending("exp", int(time.time() * 1000), 10) == []
        assert await arm_stats(store, "a") == (1.0, 1.0, 1.0)

    run(scenario())


def test_holdout_rewards_are_recorded_not_learned() -> None:
    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        nonce = new_nonce()
        assert await store.apply_rewards([command(exp, nonce, "a", 1.0, learn=False)] * 2) == [
            "recorded",
            "duplicate",
        ]
        assert await arm_stats(store, "a") == (0.0, 0.0, 0.0)

    run(scenario())


def test_discounted_update_matches_the_policy_rule() -> None:
    """The Lua discount is the vectorised policy's update, reward by reward, for real and
    default rewards alike (both scripts share ``lua/statistics.lua``)."""
    from policies import Stats, create_policy

    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(
            make_experiment(policy=PolicySpec("thompson", {"gamma": 0.9}), default_reward=0.0)
        )
        policy = create_policy("thompson", {"gamma": 0.9})
        expected = Stats.zeros(2)
        import numpy as np

        past = int(time.time() * 1000) - 10
        steps = [("a", 1.0), ("b", 0.0), ("a", None), ("b", 1.0), ("b", None), ("a", 1.0)]
        for arm, value in steps:
            if value is None:  # no reward came: the default (0.0) is credited by the sweeper
                pending = [PendingDecision(new_nonce(), arm, past)]
                await record(store, exp, pending, {})
                due = await store.due_pending("exp", int(time.time() * 1000), 10)
                assert await store.apply_defaults(exp, due, 600_000, 0.9) == [arm]
                value = 0.0
            else:
                await store.apply_rewards([command(exp, new_nonce(), arm, value, gamma=0.9)])
            expected = policy.update(expected, np.array("ab".index(arm)), np.array(value))
        for i, arm in enumerate("ab"):
            n, total, total_sq = await arm_stats(store, arm)
            assert n == pytest.approx(expected.n[i], rel=1e-12)
            assert total == pytest.approx(expected.total[i], rel=1e-12)
            assert total_sq == pytest.approx(expected.total_sq[i], rel=1e-12)

    run(scenario())


def test_rewards_for_a_deleted_experiment_are_refused_without_a_trace() -> None:
    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        await store.delete_experiment("exp")
        nonce = new_nonce()
        assert await store.apply_rewards([command(exp, nonce, "a", 1.0)]) == ["gone"]
        again = await store.create_experiment(make_experiment())
        assert again.incarnation != exp.incarnation
        assert await store.apply_rewards([command(exp, nonce, "a", 1.0)]) == ["gone"]
        assert await store.client.exists(f"br:{{exp}}:rw:{nonce}") == 0  # no marker left behind

    run(scenario())


def test_scripts_flushed_by_a_redis_restart_are_reloaded_without_double_effects() -> None:
    """EVALSHA after SCRIPT FLUSH answers NOSCRIPT (nothing ran); the store reloads and
    re-runs only those calls, so each reward still applies exactly once."""

    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        await store.client.script_flush()
        nonces = [new_nonce() for _ in range(3)]
        results = await store.apply_rewards([command(exp, n, "a", 1.0) for n in nonces])
        assert results == ["applied"] * 3
        assert await arm_stats(store, "a") == (3.0, 3.0, 3.0)

    run(scenario())


def test_a_mixed_group_commit_answers_each_reward_in_order() -> None:
    """One flush may carry several experiments, stale incarnations and unknown arms: each
    group runs as one script call, and every caller gets its own reward's outcome."""

    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        other = await store.create_experiment(make_experiment(name="other"))
        stale = exp.with_changes(incarnation="0" * 12)
        repeated = new_nonce()
        commands = [
            command(exp, repeated, "a", 1.0),
            command(other, new_nonce(), "b", 0.0),
            command(exp, new_nonce(), "zz", 1.0),  # no such arm
            command(stale, new_nonce(), "a", 1.0),  # the experiment was re-created since
            command(exp, repeated, "a", 1.0),  # a retry within the same flush
            command(exp, new_nonce(), "b", 1.0),
        ]
        results = await store.apply_rewards(commands)
        assert results == ["applied", "applied", "no_arm", "gone", "duplicate", "applied"]
        assert await arm_stats(store, "a") == (1.0, 1.0, 1.0)
        assert await arm_stats(store, "b") == (1.0, 1.0, 1.0)
        other_b = (await store.read_state("other")).arm_stat("b", "n")
        assert other_b == 1.0

    run(scenario())


def test_an_unchanged_config_is_parsed_once_and_a_change_is_read() -> None:
    """Every refresh reads every config; one whose JSON did not change is the same parsed
    Experiment (no re-parse), and a change (or another store's write) is read anew."""

    async def scenario() -> None:
        store = Store.from_url(None)
        await store.create_experiment(make_experiment())
        first = (await store.read_states(["exp"]))["exp"].experiment
        assert (await store.read_states(["exp"]))["exp"].experiment is first
        assert await store.get_experiment("exp") is first
        await store.update_experiment("exp", lambda e: e.with_changes(default_reward=1.0))
        changed = (await store.read_states(["exp"]))["exp"].experiment
        assert changed is not first
        assert (changed.default_reward, changed.version) == (1.0, first.version + 1)
        other = Store(store.client, embedded=True)  # a second replica's view of the same data
        assert (await other.read_states(["exp"]))["exp"].experiment == changed

    run(scenario())


def test_a_decision_flush_that_arrives_again_writes_nothing() -> None:
    """A writer sends a flush again, unchanged, until Redis answers; every copy after the
    first, and any older number of the same writer, writes nothing. Other writers, and the
    same writer's next number, are independent of it."""

    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment())
        future = int(time.time() * 1000) + 60_000

        def flush(number: int, nonce: str) -> DecisionFlush:
            return DecisionFlush(
                exp.name,
                exp.incarnation,
                number,
                [PendingDecision(nonce, "a", future)],
                "",
                {"a": 1},
            )

        first, second, third = (new_nonce() for _ in range(3))
        assert await store.record_decisions("w1", [flush(7, first)] * 3) == [None] * 3
        assert await store.record_decisions("w1", [flush(6, second)]) == [None]  # older: skipped
        assert await store.record_decisions("w2", [flush(1, second)]) == [None]
        assert await store.record_decisions("w1", [flush(8, third)]) == [None]
        assert (await store.read_state("exp")).arm_stat("a", "decisions") == 3
        due = await store.due_pending("exp", future + 1, 100)
        assert sorted(member.split("|")[0] for member in due) == sorted([first, second, third])
        flushed = ExperimentKeys("exp").flushed
        assert await store.client.hgetall(flushed) == {"w1": "8", "w2": "1"}
        assert 0 < await store.client.ttl(flushed) <= FLUSH_NUMBERS_TTL_SECONDS
        await store.forget_writer("w1", ["exp"])
        assert await store.client.hgetall(flushed) == {"w2": "1"}
        await store.delete_experiment("exp")
        assert await store.client.exists(flushed) == 0

    run(scenario())


def test_a_create_or_delete_cut_short_before_the_list_is_completed_by_its_retry() -> None:
    """The list of experiments spans slots, so it is written apart from the experiment's own
    keys; a create or delete whose process stopped in between is completed by its retry."""

    async def scenario() -> None:
        store = Store.from_url(None)
        await store.create_experiment(make_experiment())
        await store.client.srem(EXPERIMENTS, "exp")  # created, then cut short: unlisted
        with pytest.raises(AlreadyExists):
            await store.create_experiment(make_experiment())
        assert await store.list_names() == ["exp"]
        await store.client.delete(ExperimentKeys("exp").config)  # deleted, still listed
        with pytest.raises(NotFound):
            await store.delete_experiment("exp")
        assert await store.list_names() == []

    run(scenario())


def test_an_experiment_change_whose_script_arrives_twice_is_applied_once() -> None:
    """redis-py sends a command again when its reply times out (our connection ``retry``),
    so a change's script can run twice for one call, the second reply the one heard. Each
    script recognises its own repeat (the create's incarnation, the update's exact config,
    the reset's snapshot id; a delete finds the experiment gone): the call succeeds, and the
    change and its audit entry are there once."""

    async def scenario() -> None:
        store = Store.from_url(None)
        for name in ("_create", "_update", "_update_and_reset", "_reset", "_delete"):
            setattr(store, name, _arriving_twice(getattr(store, name)))

        def audit(action: str) -> Callable[[Experiment], list[AuditEntry]]:
            return lambda _: [AuditEntry("ops", action, {}, "why")]

        created = await store.create_experiment(make_experiment(), audit("create"))
        _, updated = await store.update_experiment(
            "exp", lambda e: e.with_changes(paused=True), audit=audit("pause")
        )
        assert updated.version == created.version + 1 == 2
        _, contextual = await store.update_experiment(
            "exp",
            lambda e: e.with_changes(
                policy=PolicySpec("lin_ts", {}), context_features=(ContextFeature("x"),)
            ),
            reset_header={"id": "s1", "taken_at": 0.0, "reason": "", "principal": "ops"},
            audit=audit("update"),
        )
        assert contextual.version == 3
        await store.reset_statistics(contextual, {"id": "s2", "taken_at": 0.0}, audit("reset"))
        assert [s["id"] for s in await store.list_snapshots("exp")] == ["s2", "s1"]
        assert (await store.require_experiment("exp")).version == 3
        await store.delete_experiment("exp", audit("delete"))
        assert await store.list_names() == []
        entries = await store.list_audit("exp", 10)
        actions = [fields["action"] for _, fields in entries]
        assert actions == ["delete", "reset", "update", "pause", "create"]

    run(scenario())


def _arriving_twice(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``call`` as redis-py's resend after a timeout makes it: run, then run again, the
    first reply lost."""

    async def twice(*args: Any, **kwargs: Any) -> Any:
        await call(*args, **kwargs)
        return await call(*args, **kwargs)

    return twice


def test_a_reward_call_whose_script_arrives_twice_answers_what_it_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py resends a group commit whose reply timed out; the resent script finds the
    markers its first run set and answers what that run did (not 'duplicate'), while a
    reward listed twice in the call, or sent by another call, is still a duplicate."""

    async def scenario() -> None:
        store = Store.from_url(None)
        exp = await store.create_experiment(make_experiment(late_rewards=LateRewardRule.APPLY))
        monkeypatch.setattr(store, "_execute", _arriving_twice(store._execute))
        first, held_out, late = new_nonce(), new_nonce(), new_nonce()
        past = int(time.time() * 1000) - 1000
        await record(store, exp, [PendingDecision(late, "b", past)], {"b": 1})
        due = await store.due_pending("exp", int(time.time() * 1000), 10)
        assert await store.apply_defaults(exp, due, 600_000, 1.0) == ["b"]
        commands = [
            command(exp, first, "a", 1.0),
            command(exp, held_out, "a", 1.0, learn=False),
            command(exp, first, "a", 1.0),
            command(exp, late, "b", 1.0, deadline_ms=past),
        ]
        outcomes = await store.apply_rewards(commands)
        assert outcomes == ["applied", "recorded", "duplicate", "late_applied"]
        assert await arm_stats(store, "a") == (1.0, 1.0, 1.0)
        assert await arm_stats(store, "b") == (1.0, 1.0, 1.0)  # the default replaced once
        monkeypatch.undo()  # one run per call again
        again = await store.apply_rewards([command(exp, first, "a", 1.0)])
        assert again == ["duplicate"]  # another call: the reward is already credited

    run(scenario())
