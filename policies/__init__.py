"""Bandit policies over per-arm sufficient statistics; pure maths, no I/O.

``create_policy(name, params)`` is the entry point; every policy offers a vectorised path
(``select``/``probabilities``/``update``/``update_inplace`` over a batch axis) and a scalar
live path (``select_one``, ``probabilities_one``); ``PredrawnDecisions`` serves many live
decisions of one state from vectorised blocks. ``policies.controls`` adds the operator's
exploration floor and burn-in on top of any policy.
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
from policies.controls import (
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
from policies.predrawn import PredrawnDecisions
from policies.registry import POLICIES, POLICY_NAMES, create_policy, parameter_specs
from policies.thompson import ThompsonSampling
from policies.top_two import TopTwoThompsonSampling
from policies.ucb import UCB1

__all__ = [
    "GAMMA_SPEC",
    "KLUCB",
    "POLICIES",
    "POLICY_NAMES",
    "UCB1",
    "DecayingEpsilonGreedy",
    "EpsilonGreedy",
    "GaussianThompsonSampling",
    "ParamSpec",
    "Policy",
    "PolicyConfigError",
    "PredrawnDecisions",
    "ScalarStats",
    "Selection",
    "Stats",
    "ThompsonSampling",
    "TopTwoThompsonSampling",
    "check_floor",
    "controlled_probabilities",
    "create_policy",
    "eligible_mask",
    "floor_probabilities",
    "floor_probabilities_one",
    "in_burn_in",
    "parameter_specs",
    "select_controlled",
    "select_one_controlled",
]
