"""Turning results into what a researcher reads: a terminal table, a JSON file, a PNG plot.

The numbers are computed once (``summarize``) and every output format renders the same
summary, so the table, the JSON and the plot can never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from simulations.runner import RunResult, StudyResult, mean_ci


def _interval(values: np.ndarray[Any, Any]) -> dict[str, float]:
    mean, half = mean_ci(values)
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half}


def summarize_run(result: RunResult, arm_names: tuple[str, ...]) -> dict[str, Any]:
    mean_curve, half = result.regret_band()
    summary: dict[str, Any] = {
        "label": result.label,
        "policy": result.policy,
        "params": result.params,
        "runs": result.runs,
        "regret_at_horizon": _interval(result.regret[:, -1]),
        "best_arm_rate": _interval(result.best_arm_rate),
        "final_allocation": dict(
            zip(arm_names, result.allocation.mean(axis=0).tolist(), strict=True)
        ),
        "curve": {
            "steps": result.steps.tolist(),
            "mean": mean_curve.tolist(),
            "ci95_low": (mean_curve - half).tolist(),
            "ci95_high": (mean_curve + half).tolist(),
        },
    }
    if result.cost is not None:
        summary["cost_per_decision"] = _interval(result.cost)
    if result.latency is not None:
        summary["latency_per_decision"] = _interval(result.latency)
    if result.guardrails is not None:
        g = result.guardrails
        summary["guardrails"] = {
            "true_trips_per_run": _interval(g.true_trips),
            "false_trips_per_run": _interval(g.false_trips),
            "probe_share": _interval(g.probes),
            "decisions_to_quarantine": _delays(g.to_quarantine),
            "decisions_to_recover": _delays(g.to_recover),
        }
    return summary


def _delays(values: np.ndarray[Any, Any]) -> dict[str, float | int]:
    """Median and mean of the observed delays; ``censored``: episodes that never got there."""
    seen = values[~np.isnan(values)]
    return {
        "median": float(np.median(seen)) if seen.size else math.nan,
        "mean": float(seen.mean()) if seen.size else math.nan,
        "observed": int(seen.size),
        "censored": int(values.size - seen.size),
    }


def _fmt_delay(delay: dict[str, float | int]) -> str:
    if not delay["observed"] and not delay["censored"]:
        return "-"
    median = "never" if not delay["observed"] else f"{delay['median']:.0f}"
    return f"{median} ({delay['censored']} censored)" if delay["censored"] else median


def summarize(study_result: StudyResult) -> dict[str, Any]:
    """Everything the outputs show, as JSON-ready data."""
    study = study_result.study
    arm_names = study.environment.arm_names
    constant = study_result.lai_robbins_constant
    summary: dict[str, Any] = {
        "study": study.name,
        "description": study.description,
        "source": study.source,
        "environment": study.env_summary,
        "horizon": study.horizon,
        "runs": study.runs,
        "seed": study.seed,
        "lai_robbins": None,
        "policies": [summarize_run(r, arm_names) for r in study_result.results],
    }
    summary["reference"] = None
    rates = study_result.reference_rates
    if rates is not None:
        oracle, fixed = rates
        summary["reference"] = {
            "oracle_reward_per_decision": oracle,
            "best_fixed_arm_reward_per_decision": fixed,
            "best_fixed_arm_regret_per_decision": oracle - fixed,
            "note": "regret is against the oracle (best arm for each context), whose regret "
            "is 0; the best fixed arm's regret grows linearly, and no context-free policy "
            "does better in expectation",
        }
    if constant is not None:
        summary["lai_robbins"] = {
            "constant": constant,
            "at_horizon": constant * math.log(study.horizon),
            "note": "asymptotic lower bound C(mu) ln T; finite-horizon regret may lie below it",
        }
    return summary


def write_json(summary: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _fmt_interval(interval: dict[str, float], digits: int = 1, scale: float = 1.0) -> str:
    mean = interval["mean"] * scale
    low, high = interval["ci95_low"] * scale, interval["ci95_high"] * scale
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def regret_table(summary: dict[str, Any]) -> Table:
    """Regret at the horizon with its 95 % CI, the Lai-Robbins asymptote, rates, allocation."""
    title = (
        f"{summary['study']}: T={summary['horizon']}, {summary['runs']} runs, "
        f"seed {summary['seed']}"
    )
    table = Table(title=title)
    table.add_column("policy")
    table.add_column("regret at T [95% CI]", justify="right")
    bound = summary["lai_robbins"]
    if bound is not None:
        table.add_column(f"Lai-Robbins C·lnT (C={bound['constant']:.2f})", justify="right")
    table.add_column("best-arm rate % [95% CI]", justify="right")
    table.add_column("final allocation %")
    policies = summary["policies"]
    has_cost = any("cost_per_decision" in p for p in policies)
    has_latency = any("latency_per_decision" in p for p in policies)
    if has_cost:
        table.add_column("cost/decision", justify="right")
    if has_latency:
        table.add_column("latency/decision", justify="right")
    has_guardrails = any("guardrails" in p for p in policies)
    if has_guardrails:
        table.add_column("trips/run true | false", justify="right")
        table.add_column("to quarantine (median)", justify="right")
        table.add_column("to recover (median)", justify="right")
    for policy in policies:
        row = [policy["label"], _fmt_interval(policy["regret_at_horizon"])]
        if bound is not None:
            row.append(f"{bound['at_horizon']:.1f}")
        row.append(_fmt_interval(policy["best_arm_rate"], scale=100.0))
        row.append(
            " ".join(
                f"{arm}={share * 100:.1f}" for arm, share in policy["final_allocation"].items()
            )
        )
        if has_cost:
            row.append(_fmt_interval(policy["cost_per_decision"], digits=3))
        if has_latency:
            row.append(_fmt_interval(policy["latency_per_decision"], digits=2))
        if has_guardrails:
            g = policy["guardrails"]
            true, false = g["true_trips_per_run"]["mean"], g["false_trips_per_run"]["mean"]
            row.append(f"{true:.2f} | {false:.2f}")
            row.append(_fmt_delay(g["decisions_to_quarantine"]))
            row.append(_fmt_delay(g["decisions_to_recover"]))
        table.add_row(*row)
    reference = summary.get("reference")
    if reference is not None:
        slope = reference["best_fixed_arm_regret_per_decision"]
        for label, value in (("oracle", 0.0), ("best fixed arm", slope * summary["horizon"])):
            table.add_row(label, f"{value:.1f}", *([""] * (len(table.columns) - 2)))
    return table


def plot_regret(summary: dict[str, Any], path: str | Path) -> None:
    """Mean cumulative regret with 95 % confidence bands, and the Lai-Robbins asymptote (plain
    studies) or the oracle and best fixed arm lines (contextual studies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        for policy in summary["policies"]:
            curve = policy["curve"]
            steps = np.asarray(curve["steps"])
            (line,) = ax.plot(steps, curve["mean"], label=policy["label"])
            ax.fill_between(
                steps, curve["ci95_low"], curve["ci95_high"], color=line.get_color(), alpha=0.2
            )
        bound = summary["lai_robbins"]
        if bound is not None and summary["policies"]:
            steps = np.asarray(summary["policies"][0]["curve"]["steps"], dtype=np.float64)
            ax.plot(
                steps,
                bound["constant"] * np.log(np.maximum(steps, 1.0)),
                "k--",
                label="Lai-Robbins C(μ)·ln t",
            )
        reference = summary.get("reference")
        if reference is not None and summary["policies"]:
            steps = np.asarray(summary["policies"][0]["curve"]["steps"], dtype=np.float64)
            slope = reference["best_fixed_arm_regret_per_decision"]
            ax.plot(steps, slope * steps, "k:", label="best fixed arm (no context)")
            ax.plot(steps, np.zeros_like(steps), "k--", label="oracle")
        ax.set_xlabel("step")
        ax.set_ylabel("cumulative regret")
        ax.set_title(f"{summary['study']} ({summary['runs']} runs, 95% CI bands)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
