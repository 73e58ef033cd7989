"""The ``simulate``, ``replay`` and ``live`` subcommands: argument parsing and I/O around the API.

Invalid inputs (study files, logs, policy parameters) are the user's to fix, so they are
printed as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from policies.base import PolicyConfigError
from policies.stopping import StoppingRule
from simulations import ope, report
from simulations.contextual_environments import ContextualEnvironment
from simulations.contextual_ope import FIT_SHARE
from simulations.identification import identification_summary, run_identification
from simulations.live import LiveConfig, run_live
from simulations.logs import LogError, LoggedData, read_log
from simulations.replay import MIN_SUPPORT, Evaluation, Target, evaluate, fitted_target
from simulations.runner import RunResult, StudyResult, run_study
from simulations.study import Study, StudyError, load_study, make_policy
from simulations.target_files import ContextualSpec, is_target_file, load_target

EXIT_USAGE = 2
Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``simulate``, ``replay`` and ``live`` to a parent parser's subcommands."""
    sim = subparsers.add_parser(
        "simulate",
        help="run a regret study of serving policies in a simulated environment",
        description="Run a study file (YAML or TOML): every policy, many seeded runs.",
    )
    sim.add_argument("study", type=Path, help="study file (.yaml, .yml or .toml)")
    sim.add_argument("--runs", type=int, help="override the study's number of runs")
    sim.add_argument("--horizon", type=int, help="override the study's horizon")
    sim.add_argument("--seed", type=int, help="override the study's seed")
    sim.add_argument(
        "--out", type=Path, default=Path("."), help="directory for JSON and PNG (default .)"
    )
    sim.add_argument("--json", type=Path, help="JSON output path (default OUT/<study>.json)")
    sim.add_argument("--png", type=Path, help="plot output path (default OUT/<study>.png)")
    sim.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    sim.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only when stderr is a terminal)",
    )
    sim.set_defaults(func=_guarded(simulate_command))

    rep = subparsers.add_parser(
        "replay",
        help="estimate a target policy's value from a decision log (off-policy evaluation)",
        description=(
            "Estimate the value of target policies on a decision log (service JSON lines, or "
            "CSV with action,reward,propensity) with replay, IPS, SNIPS and doubly robust."
        ),
    )
    rep.add_argument("log", type=Path, help="decision log (.jsonl export or .csv)")
    rep.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="SPEC",
        help="uniform | arm:NAME | POLICY[:k=v,...] e.g. thompson, kl_ucb:c=0 | FILE.yaml: an "
        "experiments-file entry or a policy spec, contextual ones with context_features "
        "(repeatable)",
    )
    rep.add_argument(
        "--fit-share",
        type=float,
        default=FIT_SHARE,
        help="contextual targets: share of the log (its first decisions) that fits their "
        f"statistics; they are scored on the rest (default {FIT_SHARE})",
    )
    rep.add_argument("--experiment", help="only decisions of this experiment")
    rep.add_argument("--arms", help="comma-separated arm order (default: from the log)")
    rep.add_argument("--seed", type=int, default=0, help="seed of the replay method")
    rep.add_argument(
        "--replays", type=int, default=10, help="replay passes to average (default 10)"
    )
    rep.add_argument(
        "--reward-range",
        metavar="LOW,HIGH",
        help="bounds of any reward, to clip intervals and bound unsupported decisions "
        "(default: the logged rewards' range)",
    )
    rep.add_argument(
        "--min-support",
        type=float,
        default=MIN_SUPPORT,
        help="refuse estimates when fewer than this share of decisions has support "
        f"(default {MIN_SUPPORT})",
    )
    rep.add_argument("--json", type=Path, help="also write the estimates to this JSON file")
    rep.set_defaults(func=_guarded(replay_command))
    register_live(subparsers)
    register_identify(subparsers)


def register_live(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``live``: run a study's policies against a running service."""
    live = subparsers.add_parser(
        "live",
        help="drive a running bandit-router with a study's simulated traffic; same regret table",
        description=(
            "Create one experiment per run on the service, Route, draw rewards from the study's "
            "environment, send Reward after its delay (drop_rate share never sent: the default "
            "reward applies after --reward-window), and report regret as 'simulate' does."
        ),
    )
    live.add_argument("study", type=Path, help="study file (.yaml, .yml or .toml)")
    live.add_argument("--target", required=True, help="service address, e.g. localhost:50051")
    live.add_argument("--token", help="bearer token for Route/Reward/Admin")
    live.add_argument("--runs", type=int, help="override the study's runs (one experiment each)")
    live.add_argument("--horizon", type=int, help="override the study's horizon")
    live.add_argument("--seed", type=int, help="override the study's seed")
    live.add_argument(
        "--reward-window", type=float, default=2.0, help="experiments' reward window, s (default 2)"
    )
    live.add_argument("--keep-experiments", action="store_true", help="do not delete them after")
    live.add_argument("--compare", action="store_true", help="also simulate, rows side by side")
    live.add_argument("--out", type=Path, default=Path("."), help="directory for JSON and PNG")
    live.add_argument("--json", type=Path, help="JSON output path (default OUT/<study>-live.json)")
    live.add_argument("--png", type=Path, help="plot output path (default OUT/<study>-live.png)")
    live.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    live.set_defaults(func=_guarded(live_command))


def register_identify(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``identify``: how an experiment's stopping rule behaves, by simulation."""
    ide = subparsers.add_parser(
        "identify",
        help="simulate an experiment's stopping rule: how often it commits, to which arm, when",
        description=(
            "Run seeded Bernoulli experiments under a policy with a stopping rule checked after "
            "every reward; print the share that named a winner, the share that named the best "
            "arm, the median and 95th percentile of Route-then-Reward pairs to the verdict, "
            "and (two arms) a fixed-horizon z-test's sample size for the same error rates."
        ),
    )
    ide.add_argument("--means", required=True, help="arm means, comma-separated, e.g. 0.6,0.4")
    ide.add_argument("--policy", default="top_two_thompson", help="allocation policy")
    ide.add_argument("--runs", type=int, default=400, help="simulated experiments (default 400)")
    ide.add_argument("--horizon", type=int, default=6000, help="pairs per experiment at most")
    ide.add_argument("--delta", type=float, default=0.05, help="error probability (default 0.05)")
    ide.add_argument("--epsilon", type=float, default=0.0, help="tolerated shortfall (default 0)")
    ide.add_argument("--min-samples", type=int, default=100, help="rewards per arm first")
    ide.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ide.add_argument("--json", type=Path, help="also write the summary to this JSON file")
    ide.set_defaults(func=_guarded(identify_command))


def identify_command(args: argparse.Namespace) -> int:
    try:
        means = [float(x) for x in args.means.split(",")]
    except ValueError:
        means = []
    if len(means) < 2 or not all(0.0 <= m <= 1.0 for m in means):
        raise StudyError(
            f"at least two Bernoulli means, each in [0, 1], got {args.means!r}",
            source="--means",
        )
    if args.runs < 1 or args.horizon < 1:
        raise StudyError("--runs and --horizon must be >= 1", source="arguments")
    rule = StoppingRule(delta=args.delta, epsilon=args.epsilon, min_samples=args.min_samples)
    policy = make_policy(args.policy, {})
    result = run_identification(
        policy, rule, means, args.runs, args.horizon, np.random.default_rng(args.seed)
    )
    summary = identification_summary(result, means, rule)
    table = Table(
        title=f"stopping rule: delta {rule.delta}, epsilon {rule.epsilon}, "
        f"min_samples {rule.min_samples}, policy {args.policy}"
    )
    for key in summary:
        table.add_column(key.replace("_", " "), justify="right")
    table.add_row(
        *(f"{v:.3f}" if isinstance(v, float) and v < 1 else f"{v:.0f}" for v in summary.values())
    )
    _console().print(table)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _console() -> Console:
    """Full-width tables when piped to a file; rich would otherwise wrap at 80 columns."""
    return Console(width=None if sys.stdout.isatty() else 200)


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (StudyError, LogError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except PolicyConfigError as exc:
            print(f"error: policy parameter {exc}", file=sys.stderr)
            return EXIT_USAGE
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            print(f"error: service: {code}: {details}", file=sys.stderr)
            return 1

    return run


# -- simulate --------------------------------------------------------------------------------


def _load_with_overrides(args: argparse.Namespace) -> Study:
    study = load_study(args.study)
    overrides = {"runs": args.runs, "horizon": args.horizon, "seed": args.seed}
    for name, value in overrides.items():
        if value is not None and (value < 1 if name != "seed" else value < 0):
            raise StudyError(f"must be >= {0 if name == 'seed' else 1}", field=f"--{name}")
    return replace(study, **{k: v for k, v in overrides.items() if v is not None})


def _write_outputs(summary: dict[str, Any], args: argparse.Namespace, stem: str) -> None:
    _console().print(report.regret_table(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.out / f"{stem}.json"
    report.write_json(summary, json_path)
    written = [str(json_path)]
    if not args.no_plot:
        png_path = args.png or args.out / f"{stem}.png"
        report.plot_regret(summary, png_path)
        written.append(str(png_path))
    print("wrote " + ", ".join(written), file=sys.stderr)


def simulate_command(args: argparse.Namespace) -> int:
    study = _load_with_overrides(args)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    total = study.horizon * len(study.policies)
    with tqdm(
        total=total, disable=not show_progress, file=sys.stderr, unit="step", desc=study.name
    ) as bar:
        result = run_study(study, progress=bar.update)
    _write_outputs(report.summarize(result), args, study.name)
    return 0


def live_command(args: argparse.Namespace) -> int:
    study = _load_with_overrides(args)
    environment = study.environment
    if study.slo is not None:
        raise StudyError(
            "live runs single-reward environments only; simulate slo studies",
            field="environment.type",
        )
    if isinstance(environment, ContextualEnvironment):
        raise StudyError(
            "live runs plain environments only; simulate contextual studies", field="environment"
        )
    if not args.reward_window > 0:
        raise StudyError("must be > 0", field="--reward-window")
    config = LiveConfig(
        target=args.target,
        token=args.token,
        reward_window=args.reward_window,
        keep_experiments=args.keep_experiments,
    )
    results: list[RunResult] = []
    for spec in study.policies:
        live = asyncio.run(
            run_live(
                environment,
                policy=spec.name,
                params=spec.params,
                horizon=study.horizon,
                runs=study.runs,
                seed=study.seed,
                config=config,
                label=f"{spec.label} (live)",
                checkpoints=study.checkpoints,
            )
        )
        results.append(live.result)
        outcomes = ", ".join(f"{k}={v}" for k, v in sorted(live.outcomes.items()))
        stale = live.max_staleness
        print(
            f"{spec.label}: rewards {outcomes}; {live.dropped} never sent; decisions missed at"
            f" most {int(stale.max(initial=0))} of their run's applied rewards"
            f" (median over runs {float(np.median(stale)) if stale.size else 0:g})",
            file=sys.stderr,
        )
        if args.compare:
            simulated = run_study(replace(study, policies=(spec,)))
            results.append(replace(simulated.results[0], label=f"{spec.label} (simulated)"))
    summary = report.summarize(StudyResult(study, tuple(results)))
    _write_outputs(summary, args, f"{study.name}-live")
    return 0


# -- replay ----------------------------------------------------------------------------------


def parse_target(spec: str) -> Target:
    """``uniform``, ``arm:NAME``, ``POLICY`` or ``POLICY:k=v,k=v``."""
    if spec == "uniform":
        return Target.uniform()
    name, _, rest = spec.partition(":")
    if name == "arm":
        if not rest:
            raise LogError("arm target needs a name, e.g. arm:checkout_b", field="--target")
        return Target.fixed_arm(rest)
    params: dict[str, float] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise LogError(f"expected k=v in {spec!r}", field="--target")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise LogError(f"{key}: expected a number, got {value!r}", field="--target") from None
    try:
        policy = make_policy(name, params)
    except PolicyConfigError as exc:
        raise LogError(f"{spec!r}: {exc}", field="--target") from None
    return Target.serving(policy, label=spec)


def parse_reward_range(spec: str | None, data: LoggedData) -> tuple[float, float] | None:
    """``LOW,HIGH`` containing every logged reward, or None (the logged range)."""
    if spec is None:
        return None
    low_text, comma, high_text = spec.partition(",")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low = high = math.nan
    if not comma or not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise LogError(f"expected LOW,HIGH with LOW <= HIGH, got {spec!r}", field="--reward-range")
    seen_low, seen_high = float(data.rewards.min()), float(data.rewards.max())
    if seen_low < low or seen_high > high:
        raise LogError(
            f"the log has rewards in [{seen_low:g}, {seen_high:g}], outside {spec!r}",
            field="--reward-range",
        )
    return low, high


def replay_command(args: argparse.Namespace) -> int:
    specs = [
        load_target(spec, args.experiment) if is_target_file(spec) else parse_target(spec)
        for spec in args.target
    ]
    records = read_log(args.log)
    if args.experiment is not None:
        records = [r for r in records if r.experiment == args.experiment]
    arm_names = [a.strip() for a in args.arms.split(",")] if args.arms else None
    data = LoggedData.from_records(records, arm_names)
    if data.size == 0:
        raise LogError("no decision with an observed reward to evaluate", source=str(args.log))
    if not 0.0 <= args.fit_share < 1.0:
        raise LogError(f"{args.fit_share!r} is outside [0, 1)", field="--fit-share")
    scored: list[tuple[Target, LoggedData]] = []
    for spec in specs:
        if isinstance(spec, ContextualSpec):
            scored.append(
                fitted_target(
                    spec.policy, spec.features, data, share=args.fit_share, label=spec.label
                )
            )
        else:
            scored.append((spec, data))
    targets = [target for target, _ in scored]
    for target in targets:
        if target.arm is not None and target.arm not in data.arm_names:
            raise LogError(
                f"target arm {target.arm!r} is not one of {list(data.arm_names)}", field="--target"
            )
    reward_range = parse_reward_range(args.reward_range, data)
    if not 0.0 <= args.min_support <= 1.0:
        raise LogError(f"{args.min_support!r} is outside [0, 1]", field="--min-support")
    evaluations = [
        evaluate(
            t,
            part,
            seed=args.seed,
            replays=args.replays,
            reward_range=reward_range,
            min_support=args.min_support,
        )
        for t, part in scored
    ]
    _console().print(_evaluation_table(evaluations, data, str(args.log)))
    for evaluation in evaluations:
        for warning in evaluation.warnings:
            print(f"warning: {evaluation.target}: {warning}", file=sys.stderr)
    if args.json is not None:
        report.write_json(_evaluations_json(evaluations, data, str(args.log)), args.json)
    return 0


def _evaluation_table(evaluations: Sequence[Evaluation], data: LoggedData, source: str) -> Table:
    table = Table(title=f"{source}: {data.size} decisions, arms {', '.join(data.arm_names)}")
    table.add_column("target")
    methods = list(dict.fromkeys(e.method for ev in evaluations for e in ev.estimates))
    for method in methods:
        table.add_column(f"{method} [95% CI]", justify="right")
    table.add_column("ESS", justify="right")
    table.add_column("support", justify="right")
    for evaluation in evaluations:
        by_method = {e.method: e for e in evaluation.estimates}
        cells = [_estimate_cell(by_method.get(method)) for method in methods]
        ess = evaluation.diagnostics.effective_sample_size
        table.add_row(evaluation.target, *cells, f"{ess:.0f}", _support_cell(evaluation))
    return table


def _estimate_cell(estimate: ope.Estimate | None) -> str:
    if estimate is None:
        return ""
    if estimate.refused:
        return "refused"
    interval = f"[{estimate.ci_low:.4f}, {estimate.ci_high:.4f}]"
    return interval if math.isnan(estimate.value) else f"{estimate.value:.4f} {interval}"


def _support_cell(evaluation: Evaluation) -> str:
    support = evaluation.support
    if support is None or support.checked == 0:
        return "unchecked"
    text = f"{support.share:.1%}"
    return text if support.checked == support.decisions else f"{text} of {support.checked}"


def _finite(number: float) -> float | None:
    """JSON has no NaN or infinity: a refused or unbounded number is null."""
    return number if math.isfinite(number) else None


def _evaluations_json(
    evaluations: Sequence[Evaluation], data: LoggedData, source: str
) -> dict[str, Any]:
    return {
        "log": source,
        "decisions": data.size,
        "skipped_without_reward": data.skipped,
        "arms": list(data.arm_names),
        "targets": [
            {
                "target": e.target,
                "estimates": {
                    est.method: {
                        "value": _finite(est.value),
                        "ci95_low": _finite(est.ci_low),
                        "ci95_high": _finite(est.ci_high),
                        "n": est.n,
                        "refused": est.refused,
                    }
                    for est in e.estimates
                },
                "reward_range": [_finite(x) for x in e.reward_range],
                "support": None
                if e.support is None
                else {
                    "decisions": e.support.decisions,
                    "checked": e.support.checked,
                    "supported": e.support.supported,
                    "share": e.support.share,
                    "unsupported_mass": e.support.unsupported_mass,
                    "unsupported_reasons": dict(e.support.unsupported_reasons),
                },
                "effective_sample_size": e.diagnostics.effective_sample_size,
                "max_weight": e.diagnostics.max_weight,
                "replay_matched": e.replay_matched,
                "warnings": list(e.warnings),
            }
            for e in evaluations
        ],
    }


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser with the same subcommands, for ``python -m simulations``."""
    parser = argparse.ArgumentParser(
        prog="python -m simulations",
        description="Regret studies, off-policy evaluation and live checks of serving policies.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    return handler(args)
