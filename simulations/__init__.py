"""Offline studies of the serving policies: simulated traffic, regret studies, off-policy
evaluation of decision logs, and (later) driving a live service.

The simulations import the policies the service runs (``policies``), never a copy, so a
study answers "which policy, with which settings, for my traffic?" for the code that serves.
"""

from simulations.environments import (
    Bernoulli,
    Drifting,
    Environment,
    Feedback,
    FixedDelay,
    Gaussian,
    GeometricDelay,
    NoDelay,
    PiecewiseStationary,
    Stationary,
    UniformDelay,
)
from simulations.logs import (
    DecisionRecord,
    LogError,
    LoggedData,
    read_csv_log,
    read_decision_log,
    read_log,
    write_decision_log,
    write_dsjson,
)
from simulations.ope import Estimate, doubly_robust, ips, snips
from simulations.replay import Evaluation, Target, evaluate, replay
from simulations.runner import RunResult, StudyResult, run_study, simulate
from simulations.study import Study, StudyError, load_study, parse_study
from simulations.theory import lai_robbins_constant

__all__ = [
    "Bernoulli",
    "DecisionRecord",
    "Drifting",
    "Environment",
    "Estimate",
    "Evaluation",
    "Feedback",
    "FixedDelay",
    "Gaussian",
    "GeometricDelay",
    "LogError",
    "LoggedData",
    "NoDelay",
    "PiecewiseStationary",
    "RunResult",
    "Stationary",
    "Study",
    "StudyError",
    "StudyResult",
    "Target",
    "UniformDelay",
    "doubly_robust",
    "evaluate",
    "ips",
    "lai_robbins_constant",
    "load_study",
    "parse_study",
    "read_csv_log",
    "read_decision_log",
    "read_log",
    "replay",
    "run_study",
    "simulate",
    "snips",
    "write_decision_log",
    "write_dsjson",
]
