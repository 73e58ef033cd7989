"""Policy names to classes: the one place the service turns configuration into a policy.

Plain policies (``POLICIES``) decide from per-arm counts and sums; contextual ones
(``CONTEXTUAL_POLICIES``) also need a feature vector per decision, so they are not
``Policy`` objects. ``is_contextual(name)`` tells which kind a name is; ``create_policy``
returns a plain policy unless the caller passes ``contextual=True``, so a caller that can only
run plain policies (today's service) refuses a contextual name with a clear error naming
``policy.name`` instead of failing later.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Literal, overload

from policies.base import GAMMA_SPEC, ParamSpec, Policy, PolicyConfigError
from policies.contextual import ContextualPolicy
from policies.epsilon_greedy import DecayingEpsilonGreedy, EpsilonGreedy
from policies.gaussian_thompson import GaussianThompsonSampling
from policies.kl_ucb import KLUCB
from policies.lin_ts import LinearThompsonSampling
from policies.lin_ucb import LinUCB
from policies.logistic_ts import LogisticThompsonSampling
from policies.thompson import ThompsonSampling
from policies.top_two import TopTwoThompsonSampling
from policies.ucb import UCB1

POLICIES: Mapping[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        ThompsonSampling,
        GaussianThompsonSampling,
        TopTwoThompsonSampling,
        UCB1,
        KLUCB,
        EpsilonGreedy,
        DecayingEpsilonGreedy,
    )
}
POLICY_NAMES: tuple[str, ...] = tuple(sorted(POLICIES))
CONTEXTUAL_POLICIES: Mapping[str, type[ContextualPolicy]] = {
    cls.name: cls for cls in (LinearThompsonSampling, LinUCB, LogisticThompsonSampling)
}
CONTEXTUAL_POLICY_NAMES: tuple[str, ...] = tuple(sorted(CONTEXTUAL_POLICIES))


def is_contextual(name: str) -> bool:
    """True for a registered contextual policy (it needs features); False for anything else."""
    return isinstance(name, str) and name in CONTEXTUAL_POLICIES


def policy_class(name: str) -> type[Policy] | type[ContextualPolicy]:
    """The class registered under ``name``, plain or contextual; PolicyConfigError("policy.name")
    otherwise."""
    if is_contextual(name):
        return CONTEXTUAL_POLICIES[name]
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        allowed = ", ".join(sorted((*POLICY_NAMES, *CONTEXTUAL_POLICY_NAMES)))
        raise PolicyConfigError(
            "policy.name", f"unknown policy {name!r}; allowed: {allowed}"
        ) from None


def parameter_specs(name: str) -> dict[str, ParamSpec]:
    """Every parameter ``name`` accepts, gamma included (for docs and config validation)."""
    return {**policy_class(name).param_specs, "gamma": GAMMA_SPEC}


def _clean(params: Mapping[str, float]) -> dict[str, float]:
    clean: dict[str, float] = {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise PolicyConfigError(str(key), f"{value!r} is not a number")
        if not math.isfinite(float(value)):
            raise PolicyConfigError(str(key), f"{value!r} is not finite")
        clean[str(key)] = float(value)
    return clean


@overload
def create_policy(
    name: str, params: Mapping[str, float], *, contextual: Literal[False] = False
) -> Policy: ...


@overload
def create_policy(
    name: str, params: Mapping[str, float], *, contextual: Literal[True]
) -> ContextualPolicy: ...


def create_policy(
    name: str, params: Mapping[str, float], *, contextual: bool = False
) -> Policy | ContextualPolicy:
    """Build and validate a policy; every bad input raises PolicyConfigError naming its field.

    Values must be real numbers (bool and strings are rejected rather than coerced, so a YAML
    typo such as ``epsilon: "0.1"`` fails loudly). ``contextual`` says which kind the caller
    runs: a name of the other kind is refused on ``policy.name``.
    """
    if contextual:
        if not is_contextual(name):
            policy_class(name)  # an unknown name: the error lists every policy
            allowed = ", ".join(CONTEXTUAL_POLICY_NAMES)
            raise PolicyConfigError(
                "policy.name", f"{name!r} is not a contextual policy; contextual: {allowed}"
            )
        return CONTEXTUAL_POLICIES[name](**_clean(params))
    if is_contextual(name):
        raise PolicyConfigError(
            "policy.name",
            f"{name!r} is a contextual policy (it decides from request features), "
            "which this caller does not run",
        )
    policy_class(name)  # an unknown name: the error lists every policy
    return POLICIES[name](**_clean(params))
