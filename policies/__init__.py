"""Bandit policies over per-arm sufficient statistics; pure maths, no I/O.

``create_policy(name, params)`` is the entry point; every policy offers a vectorised path
(``select``/``probabilities``/``update``/``update_inplace`` over a batch axis) and a scalar
live path (``select_one``, ``probabilities_one``); ``PredrawnDecisions`` serves many live
decisions of one state from vectorised blocks. Contextual policies (``lin_ts``, ``lin_ucb``,
``logistic_ts``; ``create_policy(name, params, contextual=True)``) follow the same protocol
with a feature vector per decision and a ``PreparedModel`` for the live path.
``policies.controls`` adds the operator's exploration floor and burn-in on top of any policy.
"""

from policies.base import (
    GAMMA_SPEC,
    ParamSpec,
    Policy,
    PolicyConfigError,
    ScalarStats,
    Selection,
    Stats,
    eligible_mask,
)
from policies.contextual import (
    ArmIncrement,
    ContextualPolicy,
    ContextualStats,
    FeatureError,
    PreparedModel,
)
from policies.controls import (
    cap_leftover,
    cap_probabilities,
    cap_probabilities_one,
    check_floor,
    controlled_probabilities,
    floor_probabilities,
    floor_probabilities_one,
    in_burn_in,
    select_controlled,
    select_one_controlled,
)
from policies.epsilon_greedy import DecayingEpsilonGreedy, EpsilonGreedy
from policies.gaussian_thompson import GaussianThompsonSampling
from policies.kl_ucb import KLUCB
from policies.lin_ts import LinearThompsonSampling
from policies.lin_ucb import LinUCB
from policies.logistic_ts import LogisticThompsonSampling
from policies.predrawn import PredrawnDecisions
from policies.registry import (
    CONTEXTUAL_POLICIES,
    CONTEXTUAL_POLICY_NAMES,
    POLICIES,
    POLICY_NAMES,
    create_policy,
    is_contextual,
    parameter_specs,
)
from policies.thompson import ThompsonSampling
from policies.top_two import TopTwoThompsonSampling
from policies.ucb import UCB1

__all__ = [
    "CONTEXTUAL_POLICIES",
    "CONTEXTUAL_POLICY_NAMES",
    "GAMMA_SPEC",
    "KLUCB",
    "POLICIES",
    "POLICY_NAMES",
    "UCB1",
    "ArmIncrement",
    "ContextualPolicy",
    "ContextualStats",
    "DecayingEpsilonGreedy",
    "EpsilonGreedy",
    "FeatureError",
    "GaussianThompsonSampling",
    "LinUCB",
    "LinearThompsonSampling",
    "LogisticThompsonSampling",
    "ParamSpec",
    "Policy",
    "PolicyConfigError",
    "PredrawnDecisions",
    "PreparedModel",
    "ScalarStats",
    "Selection",
    "Stats",
    "ThompsonSampling",
    "TopTwoThompsonSampling",
    "cap_leftover",
    "cap_probabilities",
    "cap_probabilities_one",
    "check_floor",
    "controlled_probabilities",
    "create_policy",
    "eligible_mask",
    "floor_probabilities",
    "floor_probabilities_one",
    "in_burn_in",
    "is_contextual",
    "parameter_specs",
    "select_controlled",
    "select_one_controlled",
]
