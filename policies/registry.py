"""Policy names to classes: the one place the service turns configuration into a policy."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from policies.base import GAMMA_SPEC, ParamSpec, Policy, PolicyConfigError
from policies.epsilon_greedy import DecayingEpsilonGreedy, EpsilonGreedy
from policies.gaussian_thompson import GaussianThompsonSampling
from policies.kl_ucb import KLUCB
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


def policy_class(name: str) -> type[Policy]:
    """The class registered under ``name``; PolicyConfigError("policy.name") otherwise."""
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        allowed = ", ".join(POLICY_NAMES)
        raise PolicyConfigError(
            "policy.name", f"unknown policy {name!r}; allowed: {allowed}"
        ) from None


def parameter_specs(name: str) -> dict[str, ParamSpec]:
    """Every parameter ``name`` accepts, gamma included (for docs and config validation)."""
    return {**policy_class(name).param_specs, "gamma": GAMMA_SPEC}


def create_policy(name: str, params: Mapping[str, float]) -> Policy:
    """Build and validate a policy; every bad input raises PolicyConfigError naming its field.

    Values must be real numbers (bool and strings are rejected rather than coerced, so a YAML
    typo such as ``epsilon: "0.1"`` fails loudly).
    """
    cls = policy_class(name)
    clean: dict[str, float] = {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise PolicyConfigError(str(key), f"{value!r} is not a number")
        if not math.isfinite(float(value)):
            raise PolicyConfigError(str(key), f"{value!r} is not finite")
        clean[str(key)] = float(value)
    return cls(**clean)
