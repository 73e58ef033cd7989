# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes itself, see `completion`)
"""bandit-router: serve, operate (kubectl-style verbs over gRPC), benchmark, simulate.

Data goes to stdout (-o table|json|yaml), diagnostics to stderr. `get -o yaml` writes the
experiment-file format, so its output can be edited and fed back to `apply -f -`.
Destructive verbs need --yes or an answer at a terminal, and never prompt without one;
--dry-run shows what would change. Client options come from flags or BANDIT_ROUTER_TARGET
and BANDIT_ROUTER_TOKEN.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.json_format import MessageToDict

from bandit_router import __version__
from bandit_router.v1 import admin_pb2, experiment_pb2

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A command-line mistake: printed without a traceback, exit status 2."""


# -- output ------------------------------------------------------------------------------------


def _to_data(message: Any) -> Any:
    if hasattr(message, "DESCRIPTOR"):
        return MessageToDict(message, preserving_proto_field_name=True)
    return message


def emit(data: Any, output: str, table: Callable[[Any], list[list[str]]] | None = None) -> None:
    data = _to_data(data) if not isinstance(data, list) else [_to_data(item) for item in data]
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    elif output == "yaml":
        print(_yaml_dump(data), end="")
    elif table is not None:
        rows = table(data)
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  ".join(
                    str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
    else:
        print(_yaml_dump(data), end="")


def _yaml_dump(data: Any) -> str:
    """``yaml.safe_dump``, with the client's enums (``Reason``, ``Outcome``...: str
    subclasses, which safe_dump refuses) written as their values, as JSON writes them."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_multi_representer(
        enum.Enum, lambda dumper, value: dumper.represent_data(value.value)
    )
    return str(yaml.dump(data, Dumper=Dumper, sort_keys=False))


#: How the tables mark an arm's state and guardrail override (JSON names of the enums).
_ARM_FLAGS = {
    "ARM_STATE_DISABLED": "off",
    "ARM_STATE_QUARANTINED": "quarantined",
    "GUARDRAIL_OVERRIDE_HOLD_ACTIVE": "held",
    "GUARDRAIL_OVERRIDE_FORCE_QUARANTINE": "forced",
}


def _arm_label(arm: Mapping[str, Any]) -> str:
    """``b``, ``c(off)``, ``b(quarantined)``, ``b(quarantined,forced)``, ``a(held)``."""
    flags = [
        _ARM_FLAGS[value]
        for value in (arm.get("state"), arm.get("guardrail_override"))
        if value in _ARM_FLAGS
    ]
    return str(arm["name"]) + (f"({','.join(flags)})" if flags else "")


def _experiment_rows(experiments: Any) -> list[list[str]]:
    rows = [["NAME", "POLICY", "ARMS", "PINNED", "PAUSED", "VERSION"]]
    for exp in experiments if isinstance(experiments, list) else [experiments]:
        arms = [_arm_label(arm) for arm in exp.get("arms", [])]
        rows.append(
            [
                exp["name"],
                exp.get("policy", {}).get("name", ""),
                ",".join(arms),
                exp.get("pin", {}).get("arm", "") or "-",
                str(exp.get("paused", False)).lower(),
                str(exp.get("version", "")),
            ]
        )
    return rows


# -- client plumbing ---------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from bandit_router.client import BanditClient

    credentials = None
    if args.tls_ca or args.tls_cert:

        def read(path: str | None) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as handle:
                return handle.read()

        credentials = grpc.ssl_channel_credentials(
            read(args.tls_ca), read(args.tls_key), read(args.tls_cert)
        )
    return BanditClient(
        args.target, token=args.token, timeout=args.timeout, credentials=credentials
    )


def _confirm(args: argparse.Namespace, what: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"refusing to {what} without --yes (no terminal to ask)")
    answer = input(f"{what}? [y/N] ")
    return answer.strip().lower() in {"y", "yes"}


def _admin(
    method: str, build: Callable[[argparse.Namespace], Any], show: str = "experiment"
) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        request = build(args)
        if getattr(args, "dry_run", False):
            print(f"dry run: would call Admin.{method} with", file=sys.stderr)
            emit(request, args.output)
            return 0
        with _client(args) as client:
            response = client.call_admin(method, request)
        result = getattr(response, show) if show and response.HasField(show) else response
        emit(result, args.output, _experiment_rows if show == "experiment" else None)
        return 0

    return handler


def _duration(seconds: float) -> Any:
    from google.protobuf.duration_pb2 import Duration

    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def _parse_duration(text: str) -> float:
    from bandit_router.errors import InvalidArgument
    from bandit_router.operations.experiment_files import parse_duration

    try:
        return parse_duration(text, "duration")
    except InvalidArgument as error:
        raise argparse.ArgumentTypeError(error.message) from error


# -- commands ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM; a bad option or a known start-up failure is one ``error:`` line
    (one JSON record with JSON logs) and exit status 2, never a traceback."""
    from bandit_router.serving.config import ConfigError, config_from_args
    from bandit_router.serving.startup import EXIT_STARTUP, report

    try:
        config = config_from_args(args)
    except ConfigError as error:
        report(str(error), args.log_json is True)
        return EXIT_STARTUP
    if (
        config.workers > 1
        and config.metrics_address
        and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    ):
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bandit-router-metrics-")
    from bandit_router.serving.server import run_reporting
    from bandit_router.serving.startup import StartupError, preflight

    if config.workers > 1:
        try:
            preflight(config)
        except StartupError as error:
            report(str(error), config.log_json)
            return EXIT_STARTUP
    return run_reporting(config)


def experiment_document(
    experiments: Sequence[experiment_pb2.Experiment],
    statistics: Sequence[admin_pb2.ArmStatistics] = (),
) -> dict[str, Any]:
    """Experiments in the experiment-file format (``active``, ``10m``), each with a read-only
    ``status`` (version, pin, pause, statistics) that ``create`` and ``apply`` ignore: what
    ``get -o yaml`` prints can be edited and applied as it is."""
    from bandit_router.model.convert import experiment_of
    from bandit_router.operations.experiment_files import experiment_to_mapping

    items = []
    for message in experiments:
        status: dict[str, Any] = {"version": message.version, "paused": message.paused}
        if message.pause_arm:
            status["pause_arm"] = message.pause_arm
        if message.HasField("pin"):
            status["pin"] = _to_data(message.pin)
        if message.HasField("commit"):
            status["commit"] = _to_data(message.commit)
        for stamp in ("created_at", "updated_at"):
            if message.HasField(stamp):
                status[stamp] = getattr(message, stamp).ToJsonString()
        if statistics:
            status["statistics"] = [_to_data(stat) for stat in statistics]
        experiment = experiment_of(message)
        guardrails = guardrail_status(experiment)
        if guardrails:
            status["guardrails"] = guardrails
        items.append({**experiment_to_mapping(experiment), "status": status})
    return {"experiments": items}


def guardrail_status(experiment: Any) -> dict[str, dict[str, Any]]:
    """Each arm's guardrail status (read only), for the arms that have one: state, override,
    since when, the rules that tripped (as indexes and in words), the last transition's
    summary and the epoch."""
    from bandit_router.model.convert import timestamp_of
    from bandit_router.model.guardrails import ArmGuardrail, Override

    status: dict[str, dict[str, Any]] = {}
    for arm in experiment.arms:
        guardrail = arm.guardrail
        if guardrail == ArmGuardrail() and arm.override is Override.NONE:
            continue
        entry: dict[str, Any] = {"state": arm.state.value}
        if arm.override is not Override.NONE:
            entry["override"] = arm.override.value
        if guardrail.since:
            entry["since"] = timestamp_of(guardrail.since).ToJsonString()
        if guardrail.tripped_rules:
            entry["tripped_rules"] = list(guardrail.tripped_rules)
            entry["tripped"] = [
                experiment.guardrails[i].describe()
                if 0 <= i < len(experiment.guardrails)
                else f"rule {i}"
                for i in guardrail.tripped_rules
            ]
        if guardrail.summary:
            entry["summary"] = guardrail.summary
        entry["epoch"] = guardrail.epoch
        status[arm.name] = entry
    return status


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.name:
            response = client.get_experiment(args.name)
            if args.output == "table":
                emit(response.experiment, "table", _experiment_rows)
                labels = {
                    arm["name"]: _arm_label(arm) for arm in _to_data(response.experiment)["arms"]
                }
                rows = [["ARM", "DECISIONS", "N", "SUM", "MEAN"]]
                for stat in response.statistics:
                    mean = stat.sum / stat.n if stat.n else 0.0
                    rows.append(
                        [
                            labels.get(stat.arm, stat.arm),
                            str(stat.decisions),
                            f"{stat.n:g}",
                            f"{stat.sum:g}",
                            f"{mean:.4f}",
                        ]
                    )
                print()
                emit(rows, "table", lambda r: r)
                _print_guardrail_status(response.experiment)
            else:
                emit(experiment_document([response.experiment], response.statistics), args.output)
        elif args.output == "table":
            emit(client.list_experiments(), args.output, _experiment_rows)
        else:
            emit(experiment_document(client.list_experiments()), args.output)
    return 0


def _print_guardrail_status(message: experiment_pb2.Experiment) -> None:
    """Below ``get experiment``'s table: each arm with a guardrail status, in words."""
    from bandit_router.model.convert import experiment_of

    for arm, entry in guardrail_status(experiment_of(message)).items():
        words = entry["state"] + (f" ({entry['override']})" if "override" in entry else "")
        if "since" in entry:
            words += f" since {entry['since']}"
        if "tripped" in entry:
            words += f", tripped: {'; '.join(entry['tripped'])}"
        if "summary" in entry:
            words += f" - {entry['summary']}"
        print(f"guardrail {arm}: {words}")


def _read_file_experiments(path: str) -> list[Any]:
    """The validated experiments of a YAML/TOML file, or of standard input for ``-``: the one
    reader (and so the one set of error messages) of ``create``, ``apply`` and ``promote``."""
    from bandit_router.operations.experiment_files import experiments_from_text, load_experiments

    if path == "-":
        if sys.stdin.isatty():
            print("reading experiments from standard input (end with Ctrl-D)", file=sys.stderr)
        return experiments_from_text(sys.stdin.read(), "<stdin>")
    return load_experiments(path)


def _load_file_experiments(path: str) -> list[Any]:
    """The experiments of a YAML/TOML file (or ``-``) as protobuf messages."""
    from bandit_router.model.convert import experiment_to_pb

    return [experiment_to_pb(experiment) for experiment in _read_file_experiments(path)]


def cmd_create(args: argparse.Namespace) -> int:
    experiments = _load_file_experiments(args.file)
    if args.dry_run:
        emit(experiments, args.output, _experiment_rows)
        return 0
    with _client(args) as client:
        created = [
            client.call_admin(
                "CreateExperiment",
                admin_pb2.CreateExperimentRequest(experiment=e, reason=args.reason),
            ).experiment
            for e in experiments
        ]
    emit(created, args.output, _experiment_rows)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Create what is missing and update what exists to match the file (keeping statistics)."""
    experiments = _load_file_experiments(args.file)
    results = []
    with _client(args) as client:
        existing = {e.name: e for e in client.list_experiments()}
        for experiment in experiments:
            if experiment.name not in existing:
                action = "create"
                request: Any = admin_pb2.CreateExperimentRequest(
                    experiment=experiment, reason=args.reason
                )
            else:
                action = "update"
                current = existing[experiment.name]
                # Operator state (pin, pause) is not part of a file: keep what is live.
                experiment.pin.CopyFrom(current.pin)
                experiment.paused = current.paused
                experiment.pause_arm = current.pause_arm
                # So is an arm's guardrail override, unless the file sets one itself.
                live = {arm.name: arm.guardrail_override for arm in current.arms}
                for arm in experiment.arms:
                    if not arm.guardrail_override and arm.name in live:
                        arm.guardrail_override = live[arm.name]
                request = admin_pb2.UpdateExperimentRequest(
                    experiment=experiment,
                    expected_version=current.version,
                    reason=args.reason,
                    reset_statistics=args.reset_statistics,
                )
            print(f"{action} {experiment.name}", file=sys.stderr)
            if args.dry_run:
                results.append(experiment)
                continue
            method = "CreateExperiment" if action == "create" else "UpdateExperiment"
            results.append(client.call_admin(method, request).experiment)
    emit(results, args.output, _experiment_rows)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if args.dry_run:
        print(f"dry run: would delete experiment {args.name} and its statistics", file=sys.stderr)
        return 0
    if not _confirm(args, f"delete experiment {args.name} and its statistics"):
        print("aborted", file=sys.stderr)
        return 1
    with _client(args) as client:
        client.delete_experiment(args.name, args.reason)
    print(f"deleted {args.name}", file=sys.stderr)
    return 0


def _destructive(
    method: str, build: Callable[[argparse.Namespace], Any], what: str, show: str
) -> Handler:
    inner = _admin(method, build, show)

    def handler(args: argparse.Namespace) -> int:
        if not args.dry_run and not _confirm(args, what.format(**vars(args))):
            print("aborted", file=sys.stderr)
            return 1
        return inner(args)

    return handler


def cmd_audit(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError("--limit must not be negative")
    with _client(args) as client:  # follows the pages up to --limit
        entries = client.list_audit(args.experiment, limit=args.limit or None)
    response = admin_pb2.ListAuditResponse(entries=entries)

    def rows(data: Any) -> list[list[str]]:
        table = [["TIME", "PRINCIPAL", "ACTION", "ARGUMENTS", "REASON"]]
        for entry in data.get("entries", []):
            table.append(
                [
                    entry.get("time", ""),
                    entry.get("principal", ""),
                    entry.get("action", ""),
                    _shorten_arguments(entry.get("arguments", "")),
                    entry.get("reason", ""),
                ]
            )
        return table

    emit(response, args.output, rows)
    return 0


#: Widest ARGUMENTS cell in the audit table; ``-o json`` and ``-o yaml`` carry them whole.
AUDIT_ARGUMENTS_WIDTH = 48


def _shorten_arguments(text: str) -> str:
    """Cut an audit entry's JSON arguments at a field boundary so the table stays readable:
    a ``create`` entry holds the whole experiment and would widen every row to its length."""
    if len(text) <= AUDIT_ARGUMENTS_WIDTH:
        return text
    cut = text.rfind(", ", 0, AUDIT_ARGUMENTS_WIDTH - len(", ...}"))
    return (text[:cut] if cut > 0 else text[: AUDIT_ARGUMENTS_WIDTH - 4]) + ", ...}"


def cmd_snapshots(args: argparse.Namespace) -> int:
    with _client(args) as client:  # every page
        response = admin_pb2.ListSnapshotsResponse(snapshots=client.list_snapshots(args.experiment))
    emit(response, "yaml" if args.output == "table" else args.output)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bandit_router.analysis.reports import render_report_table

    with _client(args) as client:
        response = client.call_admin(
            "GetReport",
            admin_pb2.GetReportRequest(
                experiment=args.experiment,
                window=_duration(args.window),
                by=args.by,
                covariate=args.covariate,
                control=args.control,
                first_exposures=args.first_exposures,
                context=_numeric_context(args.context),
                attributes=_pairs(args.attribute, "--attribute"),
            ),
        )
    if args.json or args.output == "json":
        emit(response, "json")
    elif args.output == "yaml":
        emit(response, "yaml")
    else:
        render_report_table(response)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bandit_router.analysis.export_formats import write_records

    with _client(args) as client:
        records = list(client.export_decisions(args.experiment, args.limit))
    count = write_records(records, args.format, args.out)
    print(f"exported {count} decisions ({args.format})", file=sys.stderr)
    return 0


def _pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``key=value`` arguments as a mapping; a malformed one is a usage error (exit status
    2) naming its flag."""
    pairs: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag}: expected key=value, got {item!r}")
        pairs[key] = value
    return pairs


#: ``promote``'s exit statuses: applied (or, with --dry-run, would be), refused, error.
PROMOTE_APPLIED, PROMOTE_REFUSED, PROMOTE_ERROR = 0, 3, 2


def cmd_promote(args: argparse.Namespace) -> int:
    """Evaluate a candidate configuration on the recent decision log; apply it only if it is
    better (``bandit_router.analysis.promotion``). Every error, the server's included, is
    exit status 2, so a script can tell "refused" (3) from "could not decide"."""
    from simulations.logs import LogError

    try:
        return _promote(args)
    except grpc.RpcError as error:
        status = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else str(error)
        print(f"error: {status.name if status else 'RPC'}: {details}", file=sys.stderr)
        return PROMOTE_ERROR
    except LogError as error:
        print(f"error: {error}", file=sys.stderr)
        return PROMOTE_ERROR


def _promote(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from bandit_router.analysis import promotion
    from bandit_router.analysis.export_formats import record_of
    from bandit_router.model.convert import experiment_of, experiment_to_pb
    from policies import Stats
    from simulations.logs import read_log

    candidates = _read_file_experiments(args.candidate)
    if len(candidates) != 1 or candidates[0].name != args.experiment:
        found = ", ".join(repr(c.name) for c in candidates) or "none"
        raise UsageError(
            f"{args.candidate}: a candidate file holds exactly one experiment named "
            f"{args.experiment!r}; found {found}"
        )
    candidate = candidates[0]
    since = promotion.window_start(time.time(), args.window)
    with _client(args) as client:
        response = client.get_experiment(args.experiment)
        current = experiment_of(response.experiment)
        names = current.arm_names
        by_arm = {stat.arm: stat for stat in response.statistics}

        def column(field: str) -> Any:
            return np.asarray(
                [float(getattr(by_arm[a], field)) if a in by_arm else 0.0 for a in names]
            )

        stats = Stats(column("n"), column("sum"), column("sum_sq"))
        contextual = _contextual_statistics(current, by_arm)
        records = (
            read_log(args.log)
            if args.log
            else (record_of(m) for m in client.export_decisions(args.experiment, since=since))
        )
        data, notes = promotion.logged_data(records, args.experiment, names, since)
        assessment = promotion.assess(
            current,
            candidate,
            stats,
            column("decisions"),
            data,
            warnings=notes,
            contextual=contextual,
        )
        applying = assessment.approved or (args.force and not assessment.incompatible)
        if not applying:
            action = "refused"
        elif args.dry_run:
            action = "would apply (dry run)"
        else:
            # A change of the statistics' meaning (plain -> contextual, other features)
            # is refused by the service unless the same update resets them.
            client.call_admin(
                "UpdateExperiment",
                admin_pb2.UpdateExperimentRequest(
                    experiment=experiment_to_pb(candidate),
                    expected_version=response.experiment.version,
                    update_mask=FieldMask(paths=list(assessment.changes.paths)),
                    reason=_promotion_reason(args, assessment),
                    reset_statistics=assessment.reset,
                ),
            )
            action = "applied with a statistics reset" if assessment.reset else "applied"
    _print_promotion(args, assessment, action)
    return PROMOTE_APPLIED if applying else PROMOTE_REFUSED


def _contextual_statistics(experiment: Any, by_arm: dict[str, Any]) -> Any:
    """The live (n, A, b) of a contextual experiment from GetExperiment (None otherwise, or
    from a server that does not return them: promote then fits statistics on the log)."""
    import numpy as np

    from policies.contextual import ContextualStats

    if not experiment.policy.contextual:
        return None
    dim = len(experiment.feature_columns)
    names = experiment.arm_names
    stats = ContextualStats.zeros(len(names), dim)
    for k, arm in enumerate(names):
        entry = by_arm.get(arm)
        if entry is None:
            continue
        if len(entry.gram) != dim * dim or len(entry.b) != dim:
            return None
        stats.n[k] = entry.n
        stats.gram[k] = np.asarray(entry.gram).reshape(dim, dim)
        stats.b[k] = np.asarray(entry.b)
    return stats


def _promotion_reason(args: argparse.Namespace, assessment: Any) -> str:
    """The audit entry's reason: a promotion, forced or not, with the numbers that decided it
    (the update itself is audited with the fields it changed)."""
    from bandit_router.model.experiments import MAX_REASON_LENGTH

    candidate, current = assessment.estimate("candidate"), assessment.estimate("current")
    if candidate is not None and current is not None:
        numbers = (
            f"candidate DR {candidate.value:.4f} [{candidate.ci_low:.4f}, "
            f"{candidate.ci_high:.4f}] vs current DR {current.value:.4f} on "
            f"{assessment.scope} decisions"
        )
    else:
        numbers = f"not evaluated ({assessment.refusals[0]})"
    if args.force:
        verdict = "gate refused" if assessment.refusals else "gate approved"
        head = f"promote FORCED ({verdict})"
    else:
        head = "promote"
    if assessment.reset:
        numbers += "; statistics reset (the candidate's statistics mean something else)"
    text = f"{head}: {numbers}" + (f"; {args.reason}" if args.reason else "")
    return text[:MAX_REASON_LENGTH]


def _print_promotion(args: argparse.Namespace, assessment: Any, action: str) -> None:
    from bandit_router.analysis import promotion

    document = promotion.to_document(
        assessment,
        experiment=args.experiment,
        window=args.window,
        action=action,
        forced=bool(args.force),
    )
    for warning in assessment.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output in ("json", "yaml"):
        emit(document, args.output)
        return
    from bandit_router.operations.experiment_files import format_duration

    window = f"the last {format_duration(args.window)}" if args.window else "the whole retained log"
    print(
        f"{args.experiment}: {assessment.decisions} decisions with a reward in {window} "
        f"({assessment.skipped} without one left out), {assessment.scope} evaluated"
    )
    emit(promotion.table_rows(assessment), "table", lambda rows: rows)
    print()
    emit(promotion.law_rows(assessment), "table", lambda rows: rows)
    changed = [*assessment.changes.evaluated, *assessment.changes.unevaluated]
    print(f"\nchanges: {', '.join(changed) or 'none'}")
    verdict = "apply" if assessment.approved else "refuse"
    overridden = args.force and not assessment.approved and not assessment.incompatible
    print(f"verdict: {verdict}" + (" (overridden by --force)" if overridden else ""))
    for refusal in assessment.refusals:
        print(f"  - {refusal}")
    if assessment.reset:
        print(
            "statistics: applying resets them (UpdateExperiment reset_statistics; a snapshot "
            "is kept): the candidate's policy kind or features differ from the live ones"
        )
    print(f"action: {action}")


def _numeric_context(values: Sequence[str] | None) -> dict[str, float]:
    """``--context key=number`` arguments; a non-number stops with the flag and key named."""
    return _numeric_pairs(values, "--context")


def _numeric_pairs(values: Sequence[str] | None, flag: str) -> dict[str, float]:
    """``key=number`` arguments of ``flag``; a non-number stops with the flag and key named
    (NaN and infinity pass: the server names them)."""
    numbers: dict[str, float] = {}
    for key, value in _pairs(values, flag).items():
        try:
            numbers[key] = float(value)
        except ValueError:
            raise UsageError(f"{flag}: {key}={value!r} is not a number") from None
    return numbers


def cmd_route(args: argparse.Namespace) -> int:
    context = _numeric_context(args.context)
    with _client(args) as client:
        result = client.route(
            args.experiment,
            args.unit,
            args.exclude or (),
            context,
            attributes=_pairs(args.attribute, "--attribute"),
        )
    emit({**result.__dict__, "reward_deadline": result.reward_deadline.isoformat()}, args.output)
    return 0


def cmd_reward(args: argparse.Namespace) -> int:
    metrics = _numeric_pairs(args.metric, "--metric")
    with _client(args) as client:
        outcome = client.reward(args.decision_id, args.value, metrics=metrics)
    emit({"outcome": outcome}, args.output)
    return 0


#: ``guardrail ACTION``: the override each action sets.
GUARDRAIL_ACTIONS = {"hold": "HOLD_ACTIVE", "force": "FORCE_QUARANTINE", "auto": "NONE"}


def cmd_guardrail(args: argparse.Namespace) -> int:
    """Set an arm's guardrail override: an UpdateExperiment of the arms at the version just
    read (``BanditClient.set_guardrail_override``), audited with the override and reason."""
    from bandit_router.client import GuardrailOverride
    from bandit_router.client import requests as client_requests

    override = GuardrailOverride(GUARDRAIL_ACTIONS[args.action])
    with _client(args) as client:
        if args.dry_run:
            current = client.get_experiment(args.experiment).experiment
            request = client_requests.guardrail_override(current, args.arm, override, args.reason)
            print("dry run: would call Admin.UpdateExperiment with", file=sys.stderr)
            emit(request, args.output)
            return 0
        experiment = client.set_guardrail_override(
            args.experiment, args.arm, override, reason=args.reason
        )
    arm = next(a for a in experiment.arms if a.name == args.arm)
    state = experiment_pb2.ArmState.Name(arm.state).removeprefix("ARM_STATE_").lower()
    print(f"{args.experiment}/{args.arm}: {state}, override {override.value}", file=sys.stderr)
    emit(experiment, args.output, _experiment_rows)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Create a token; the config (and anything that leaks it) holds only its SHA-256.

    With ``--file``: the entry is added to that tokens file in place (created if missing, see
    ``token_files``) and the token goes to stdout, once, for its holder. Without: the token
    goes to stderr and a tokens document with the one entry to stdout. The server never needs
    the token itself.
    """
    import time

    from bandit_router.operations.auth import hash_token, new_token

    token = new_token()
    entry: dict[str, Any] = {
        "principal": args.principal,
        "role": args.role,
        "sha256": hash_token(token),
    }
    if args.expires_in:
        entry["expires_at"] = round(time.time() + args.expires_in, 3)
    if args.file:
        from bandit_router.operations.token_files import add_token_entry

        count = add_token_entry(args.file, entry)
        print(
            f"added a token with role {args.role} for {args.principal} to {args.file} "
            f"({count} entries); "
            "servers read the file at start. The token (printed once, stored nowhere) "
            "follows on stdout.",
            file=sys.stderr,
        )
        print(token)
        return 0
    print(
        f"token (give it to {args.principal}; it is not stored anywhere): {token}", file=sys.stderr
    )
    print(_yaml_dump({"tokens": [entry]}), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of experiment files (for editors and CI validation)."""
    from importlib import resources

    print(resources.files("bandit_router").joinpath("schema/experiments.schema.json").read_text())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bandit_router.bench.runner import main as bench_main

    try:
        return bench_main(args)
    except RuntimeError as error:  # the benchmark's setup: a missing tool, a server that died
        print(f"error: {error}", file=sys.stderr)
        return 2


# -- parser ------------------------------------------------------------------------------------

#: ``bandit-router completion SHELL``: the shells argcomplete writes a script for.
COMPLETION_SHELLS = ("bash", "zsh", "fish", "tcsh", "powershell")

#: The distributions behind each import the command line may miss, and the extra that brings
#: them: the base distribution is the Python client only.
_EXTRA_OF_MODULE = {
    "yaml": "server",
    "numpy": "server",
    "scipy": "server",
    "redis": "server",
    "hiredis": "server",
    "fakeredis": "server",
    "lupa": "server",
    "prometheus_client": "server",
    "rich": "server",
    "argcomplete": "server",
    "grpc_health": "server",
    "grpc_reflection": "server",
    "uvloop": "server",
    "tqdm": "sim",
    "matplotlib": "sim",
}


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the shell script that completes bandit-router's commands and options."""
    from argcomplete.shell_integration import shellcode

    print(shellcode(["bandit-router"], shell=args.shell), end="")
    return 0


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and the examples epilog keep their line breaks (argparse would refill the
    examples into one paragraph)."""


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        default=os.environ.get("BANDIT_ROUTER_TARGET", "127.0.0.1:50051"),
        help="server address [BANDIT_ROUTER_TARGET]",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("BANDIT_ROUTER_TOKEN"),
        help="bearer token [BANDIT_ROUTER_TOKEN]",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument("--tls-ca", help="PEM CA to verify the server (enables TLS)")
    parser.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", help="PEM client key (mutual TLS)")
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml"),
        default="table",
        help="output format (get: json and yaml are the experiment-file format)",
    )


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why: recorded in the audit log")


def _dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be sent, change nothing"
    )


def _yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="do it without asking")


def _file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--file", required=True, help="experiment file (.yaml, .yml, .json, .toml), or -"
    )


def _arm_state_request(state: experiment_pb2.ArmState) -> Callable[[argparse.Namespace], Any]:
    def build(args: argparse.Namespace) -> admin_pb2.SetArmStateRequest:
        return admin_pb2.SetArmStateRequest(
            experiment=args.experiment, arm=args.arm, state=state, reason=args.reason
        )

    return build


def build_parser() -> argparse.ArgumentParser:
    from bandit_router.operations.auth import ROLES
    from bandit_router.serving.config import add_server_arguments

    parser = argparse.ArgumentParser(
        prog="bandit-router",
        description=__doc__,
        formatter_class=_Formatter,
        epilog=_examples(
            "bandit-router serve --example",
            "bandit-router get experiments",
            "bandit-router get experiment homepage -o yaml | bandit-router apply -f -",
            "bandit-router COMMAND --help",
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, description: str, examples: Sequence[str], func: Handler | None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=_examples(*examples),
            formatter_class=_Formatter,
        )
        if func is not None:
            sub.set_defaults(func=func)
        return sub

    def client_command(
        name: str, help_text: str, description: str, examples: Sequence[str], func: Handler
    ) -> argparse.ArgumentParser:
        sub = command(name, help_text, description, examples, func)
        _client_options(sub)
        return sub

    serve = command(
        "serve",
        "run the gRPC service",
        "Serve Router and Admin over gRPC until SIGTERM, with health, reflection and Prometheus\n"
        "metrics. Every flag can also be set from its BANDIT_ROUTER_* variable.",
        [
            "bandit-router serve --example",
            "bandit-router serve --redis-url redis://localhost:6379/0 --experiments exp.yaml",
        ],
        cmd_serve,
    )
    add_server_arguments(serve)

    get = client_command(
        "get",
        "list experiments, or show one with its statistics",
        "List the experiments, or show one with its per-arm statistics. With -o yaml or -o json\n"
        "the output is an experiment file (each experiment with a read-only status), which\n"
        "apply -f accepts as it is.",
        [
            "bandit-router get experiments",
            "bandit-router get experiment homepage",
            "bandit-router get experiment homepage -o yaml > homepage.yaml",
        ],
        cmd_get,
    )
    get.add_argument("kind", choices=("experiments", "experiment"), help="what to get")
    get.add_argument("name", nargs="?", help="the experiment (all of them if left out)")

    create = client_command(
        "create",
        "create the experiments of a YAML/TOML file",
        "Create every experiment of a file; one that exists already is an error (see apply).",
        [
            "bandit-router create -f experiments.yaml",
            "cat experiments.yaml | bandit-router create -f -",
        ],
        cmd_create,
    )
    _file(create)
    _dry_run(create)
    _reason(create)

    apply = client_command(
        "apply",
        "create or update experiments to match a file",
        "Create the experiments of a file that do not exist and update those that do, keeping\n"
        "their statistics and operator state (pin, pause). A file's status sections are ignored.",
        [
            "bandit-router apply -f experiments.yaml --reason 'raise the floor'",
            "bandit-router get experiment homepage -o yaml | bandit-router apply -f -",
        ],
        cmd_apply,
    )
    _file(apply)
    _dry_run(apply)
    apply.add_argument(
        "--reset-statistics",
        action="store_true",
        help="also reset the statistics of the experiments updated (snapshots kept); needed "
        "when context_features or the kind of policy change",
    )
    _reason(apply)

    delete = client_command(
        "delete",
        "delete an experiment and its statistics",
        "Delete an experiment and its statistics (asks first; --yes when not at a terminal).",
        ["bandit-router delete experiment homepage --yes --reason 'test over'"],
        cmd_delete,
    )
    delete.add_argument("kind", choices=("experiment",), help="what to delete")
    delete.add_argument("name", help="the experiment")
    _yes(delete)
    _dry_run(delete)
    _reason(delete)

    pin = client_command(
        "pin",
        "send all traffic (or one unit's) to an arm",
        "Pin an experiment to one arm: Route answers it (reason PINNED) until unpinned or the\n"
        "pin's TTL runs out. With --unit, only that unit id is pinned (QA).",
        [
            "bandit-router pin homepage ranker-b --ttl 30m --reason 'incident 42'",
            "bandit-router pin homepage ranker-c --unit qa-user-1",
        ],
        _admin(
            "PinArm",
            lambda a: admin_pb2.PinArmRequest(
                experiment=a.experiment,
                arm=a.arm,
                unit_id=a.unit,
                ttl=_duration(a.ttl),
                reason=a.reason,
            ),
        ),
    )
    pin.add_argument("experiment", help="the experiment")
    pin.add_argument("arm", help="the arm to send traffic to")
    pin.add_argument("--unit", default="", help="pin only this unit id (QA)")
    pin.add_argument("--ttl", type=_parse_duration, default=0.0, help="expire after e.g. 30m")
    _dry_run(pin)
    _reason(pin)

    unpin = client_command(
        "unpin",
        "remove a pin",
        "Remove the experiment's pin (or, with --unit, one unit's): the policy decides again.",
        ["bandit-router unpin homepage", "bandit-router unpin homepage --unit qa-user-1"],
        _admin(
            "Unpin",
            lambda a: admin_pb2.UnpinRequest(
                experiment=a.experiment, unit_id=a.unit, reason=a.reason
            ),
        ),
    )
    unpin.add_argument("experiment", help="the experiment")
    unpin.add_argument("--unit", default="", help="remove only this unit's pin")
    _dry_run(unpin)
    _reason(unpin)

    reopen = client_command(
        "reopen",
        "undo a commit: the experiment learns and allocates again",
        "Clear the winner an experiment committed to (its stopping rule held): Route uses the\n"
        "policy again. Unless --keep-committing, the rule's commit is also turned off, so the\n"
        "report keeps naming the winner but the experiment does not commit again until an\n"
        "operator sets stopping.commit. Audited as an update of commit and stopping.commit.",
        ["bandit-router reopen checkout --reason 'check the new pricing first'"],
        _admin(
            "UpdateExperiment",
            lambda a: admin_pb2.UpdateExperimentRequest(
                experiment=experiment_pb2.Experiment(
                    name=a.experiment, stopping=experiment_pb2.StoppingRule(commit=False)
                ),
                update_mask={
                    "paths": ["commit"] if a.keep_committing else ["commit", "stopping.commit"]
                },
                reason=a.reason,
            ),
        ),
    )
    reopen.add_argument("experiment", help="the experiment")
    reopen.add_argument(
        "--keep-committing",
        action="store_true",
        help="leave stopping.commit on: the rule commits again as soon as it holds",
    )
    _dry_run(reopen)
    _reason(reopen)

    for verb, state in (
        ("disable", experiment_pb2.ARM_STATE_DISABLED),
        ("enable", experiment_pb2.ARM_STATE_ACTIVE),
    ):
        arm_command = client_command(
            verb,
            f"{verb} an arm (kill switch)" if verb == "disable" else "enable an arm",
            "Stop routing to an arm at once, keeping its statistics (the kill switch)."
            if verb == "disable"
            else "Route to a disabled arm again; its statistics were kept.",
            [f"bandit-router {verb} homepage ranker-b --reason 'bad results'"],
            _admin("SetArmState", _arm_state_request(state)),
        )
        arm_command.add_argument("experiment", help="the experiment")
        arm_command.add_argument("arm", help="the arm")
        _dry_run(arm_command)
        _reason(arm_command)

    guardrail = client_command(
        "guardrail",
        "hold an arm out of quarantine, force it in, or give it back to the rules",
        "Set an arm's guardrail override (docs/guardrails.md). hold: the arm is never\n"
        "quarantined, and a quarantined one is released at once; force: it is quarantined\n"
        "(probe traffic only) whatever the rules say; auto: the rules decide again, afresh\n"
        "(a new statistics epoch). The override stays until changed, so a reason is required;\n"
        "it is audited as an update of the arms naming the override. An apply -f of a file\n"
        "without guardrail_override clears it.",
        [
            "bandit-router guardrail hold llm-router large --reason 'SLO waived, incident 42'",
            "bandit-router guardrail force llm-router medium --reason 'provider outage'",
            "bandit-router guardrail auto llm-router medium --reason 'provider back'",
        ],
        cmd_guardrail,
    )
    guardrail.add_argument(
        "action", choices=tuple(GUARDRAIL_ACTIONS), help="hold | force | auto (the rules decide)"
    )
    guardrail.add_argument("experiment", help="the experiment")
    guardrail.add_argument("arm", help="the arm")
    guardrail.add_argument(
        "--reason", required=True, help="why: recorded in the audit log (required)"
    )
    _dry_run(guardrail)

    add_arm = client_command(
        "add-arm",
        "add an arm to a running experiment",
        "Add an arm to a running experiment, optionally warm-started with prior statistics.",
        [
            "bandit-router add-arm homepage ranker-d",
            "bandit-router add-arm homepage ranker-d --prior-n 100 --prior-sum 12",
        ],
        _admin(
            "AddArm",
            lambda a: admin_pb2.AddArmRequest(
                experiment=a.experiment,
                arm=experiment_pb2.Arm(
                    name=a.arm,
                    prior_n=a.prior_n,
                    prior_sum=a.prior_sum,
                    prior_sum_sq=a.prior_sum_sq,
                ),
                reason=a.reason,
            ),
        ),
    )
    add_arm.add_argument("experiment", help="the experiment")
    add_arm.add_argument("arm", help="the new arm's name")
    add_arm.add_argument("--prior-n", type=float, default=0.0, help="warm start: observations")
    add_arm.add_argument("--prior-sum", type=float, default=0.0, help="warm start: sum of rewards")
    add_arm.add_argument(
        "--prior-sum-sq", type=float, default=0.0, help="warm start: sum of squares"
    )
    _dry_run(add_arm)
    _reason(add_arm)

    remove_arm = client_command(
        "remove-arm",
        "remove an arm and its statistics",
        "Remove an arm and its statistics; rewards for its open decisions are refused.",
        ["bandit-router remove-arm homepage ranker-d --yes"],
        _destructive(
            "RemoveArm",
            lambda a: admin_pb2.RemoveArmRequest(
                experiment=a.experiment, arm=a.arm, reason=a.reason
            ),
            "remove arm {arm} of {experiment} and its statistics",
            "experiment",
        ),
    )
    remove_arm.add_argument("experiment", help="the experiment")
    remove_arm.add_argument("arm", help="the arm to remove")
    _yes(remove_arm)
    _dry_run(remove_arm)
    _reason(remove_arm)

    pause = client_command(
        "pause",
        "route to a default arm without learning",
        "Route every call to one arm (--arm, else the one it was last paused on, else the\n"
        "first active arm) and stop learning until resume.",
        ["bandit-router pause homepage --arm ranker-a --reason 'holiday traffic'"],
        _admin(
            "Pause",
            lambda a: admin_pb2.PauseRequest(experiment=a.experiment, arm=a.arm, reason=a.reason),
        ),
    )
    pause.add_argument("experiment", help="the experiment")
    pause.add_argument("--arm", default="", help="the arm to route to while paused")
    _dry_run(pause)
    _reason(pause)

    resume = client_command(
        "resume",
        "resume learning",
        "Undo pause: the policy routes and learns again.",
        ["bandit-router resume homepage"],
        _admin(
            "Resume", lambda a: admin_pb2.ResumeRequest(experiment=a.experiment, reason=a.reason)
        ),
    )
    resume.add_argument("experiment", help="the experiment")
    _dry_run(resume)
    _reason(resume)

    reset = client_command(
        "reset",
        "return statistics to the prior (snapshot kept)",
        "Return every arm's statistics to its prior; the old statistics are kept as a snapshot\n"
        "(see snapshots).",
        ["bandit-router reset homepage --yes --reason 'new ranking model'"],
        _destructive(
            "Reset",
            lambda a: admin_pb2.ResetRequest(experiment=a.experiment, reason=a.reason),
            "reset the statistics of {experiment}",
            "snapshot",
        ),
    )
    reset.add_argument("experiment", help="the experiment")
    _yes(reset)
    _dry_run(reset)
    _reason(reset)

    snapshots = client_command(
        "snapshots",
        "list statistics snapshots taken by reset",
        "List the statistics snapshots that reset took, newest first.",
        ["bandit-router snapshots homepage -o json"],
        cmd_snapshots,
    )
    snapshots.add_argument("experiment", help="the experiment")

    audit = client_command(
        "audit",
        "who changed what, when and why",
        "Show the audit log of an experiment: time, principal, action, arguments and reason.",
        ["bandit-router audit homepage", "bandit-router audit homepage --limit 10 -o json"],
        cmd_audit,
    )
    audit.add_argument("experiment", help="the experiment")
    audit.add_argument(
        "--limit", type=int, default=100, help="newest entries to show (0: all the log keeps)"
    )

    report = client_command(
        "report",
        "per-arm posterior, probability of being best, advice",
        "Per arm: decisions, rewards, posterior mean with its interval, probability of being\n"
        "best, expected loss, recent traffic share and drift; then a recommendation. Then\n"
        "checks over the window's decision log: sample ratio, novelty and, on request,\n"
        "per-segment reports (--by) and CUPED (--covariate).",
        [
            "bandit-router report homepage",
            "bandit-router report homepage --window 15m -o json",
            "bandit-router report homepage --by country",
            "bandit-router report homepage --covariate pre_metric --control current",
            "bandit-router report router --context prompt_tokens=1200 --attribute tier=premium",
        ],
        cmd_report,
    )
    report.add_argument("experiment", help="the experiment")
    report.add_argument(
        "--window",
        type=_parse_duration,
        default=3600.0,
        help="window of the decision log read for the recent share and the checks",
    )
    report.add_argument("--json", action="store_true", help="the same as -o json")
    report.add_argument(
        "--by",
        default="",
        metavar="KEY",
        help="report per segment: a context key, or unit:N for N buckets of unit ids",
    )
    report.add_argument(
        "--covariate",
        default="",
        metavar="KEY",
        help="context key with each unit's pre-period metric: adds CUPED-adjusted differences",
    )
    report.add_argument(
        "--control", default="", metavar="ARM", help="CUPED's reference arm (default: the first)"
    )
    report.add_argument(
        "--first-exposures",
        type=int,
        default=1,
        metavar="N",
        help="a unit's first N exposures to an arm count as first in the novelty check",
    )
    report.add_argument(
        "--context",
        action="append",
        metavar="KEY=NUMBER",
        help="contextual experiments: a numeric feature of the request to score (repeatable)",
    )
    report.add_argument(
        "--attribute",
        action="append",
        metavar="KEY=VALUE",
        help="contextual experiments: a categorical feature of the request (repeatable)",
    )

    export = client_command(
        "export",
        "export the decision log (JSON lines or VW DSJSON)",
        "Export the decision log of an experiment for offline evaluation (replay).",
        [
            "bandit-router export homepage --out log.jsonl",
            "bandit-router export homepage --format dsjson --out log.dsjson",
        ],
        cmd_export,
    )
    export.add_argument("experiment", help="the experiment")
    export.add_argument(
        "--format", choices=("jsonl", "dsjson"), default="jsonl", help="record format"
    )
    export.add_argument("--out", default="-", help="file, or - for stdout")
    export.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")

    promote = client_command(
        "promote",
        "apply a candidate configuration only if the decision log says it is better",
        "Evaluate a candidate configuration (a file with one experiment of the same name, as\n"
        "create -f reads) and the live one on the experiment's recent decision log with the\n"
        "doubly robust estimator, print both with their intervals and support, and apply the\n"
        "candidate (an audited UpdateExperiment) only if its lower 95% bound beats the live\n"
        "configuration's estimate. Exit status: 0 applied (with --dry-run: would apply),\n"
        "3 refused, 2 error. See docs/operating.md, Promoting a configuration.",
        [
            "bandit-router promote homepage --candidate greedier.yaml --dry-run",
            "bandit-router promote homepage --candidate greedier.yaml --window 6h",
            "bandit-router promote homepage --candidate c.yaml --force --reason 'incident 42'",
        ],
        cmd_promote,
    )
    promote.add_argument("experiment", help="the experiment")
    promote.add_argument(
        "--candidate", required=True, help="experiment file (.yaml, .yml, .json, .toml), or -"
    )
    promote.add_argument(
        "--window",
        type=_parse_duration,
        default=86400.0,
        help="evaluate the decisions of this recent window, e.g. 6h (0: the whole retained "
        "log; default 24h)",
    )
    promote.add_argument(
        "--log",
        help="evaluate this exported log (bandit-router export) instead of the server's",
    )
    promote.add_argument(
        "--force",
        action="store_true",
        help="apply even if the evaluation refuses (audited as forced); never across changed arms",
    )
    promote.add_argument(
        "--dry-run", action="store_true", help="evaluate and print the verdict, change nothing"
    )
    _reason(promote)

    route = client_command(
        "route",
        "ask for an arm (for trying things out)",
        "Call Route once and print the decision (its id is what reward needs).",
        ["bandit-router route homepage --unit user-42 -o json"],
        cmd_route,
    )
    route.add_argument("experiment", help="the experiment")
    route.add_argument("--unit", default="", help="unit id (sticky routing, per-unit pins)")
    route.add_argument("--exclude", action="append", help="an arm not to choose")
    route.add_argument("--context", action="append", metavar="KEY=NUMBER", help="a numeric feature")
    route.add_argument(
        "--attribute", action="append", metavar="KEY=VALUE", help="a categorical feature"
    )

    reward = client_command(
        "reward",
        "credit a reward to a decision",
        "Call Reward once: credit a value and/or named metrics to a decision (a repeat\n"
        "answers DUPLICATE). With an objective, give the metrics and leave the value out: the\n"
        "service computes it.",
        [
            "bandit-router reward '2~homepage~...' 1",
            "bandit-router reward '2~llm-router~...' --metric quality=0.8 --metric cost_usd=0.004 "
            "--metric latency_ms=420 --metric error=0",
        ],
        cmd_reward,
    )
    reward.add_argument("decision_id", help="the decision id route printed")
    reward.add_argument(
        "value",
        type=float,
        nargs="?",
        default=None,
        help="the reward (left out: unset; 0 without an objective)",
    )
    reward.add_argument(
        "--metric",
        action="append",
        metavar="NAME=NUMBER",
        help="a metric the experiment declares (repeatable)",
    )

    token = command(
        "token",
        "manage bearer tokens (token create ...)",
        "Manage the bearer tokens a server reads from its tokens file.",
        ["bandit-router token create --principal ops-dana --role operator --file tokens.yaml"],
        None,
    )
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    token_create = token_commands.add_parser(
        "create",
        help="create a bearer token and add its hashed entry to a tokens file",
        description="Create a bearer token. Only its SHA-256 goes into the tokens file; the\n"
        "token itself is printed once and stored nowhere.",
        epilog=_examples(
            "bandit-router token create --principal ops-dana --role operator --file tokens.yaml",
            "bandit-router token create --principal ci --role reader --expires-in 90d",
        ),
        formatter_class=_Formatter,
    )
    token_create.add_argument("--principal", required=True, help="who holds the token (audited)")
    token_create.add_argument("--role", choices=ROLES, required=True, help="what it may do")
    token_create.add_argument(
        "--expires-in",
        type=_parse_duration,
        default=0.0,
        help="the token stops working after e.g. 90d (default: never)",
    )
    token_create.add_argument(
        "--file",
        help="add the entry to this tokens file in place (created with mode 0600 if missing) "
        "and print only the token, on stdout",
    )
    token_create.set_defaults(func=cmd_token)

    command(
        "schema",
        "print the JSON Schema of experiment files",
        "Print the JSON Schema of experiment files, for editors and CI validation.",
        ["bandit-router schema > experiments.schema.json"],
        cmd_schema,
    )

    completion = command(
        "completion",
        "print the shell completion script",
        "Print the script that completes bandit-router's commands and options in your shell\n"
        "(argcomplete). Load it from your shell's start-up file.",
        [
            "bandit-router completion bash > ~/.local/share/bash-completion/completions/"
            "bandit-router",
            'eval "$(bandit-router completion zsh)"',
        ],
        cmd_completion,
    )
    completion.add_argument("shell", choices=COMPLETION_SHELLS, help="your shell")

    bench = command(
        "bench",
        "benchmark Route/Reward against an echo gRPC server",
        "Measure Route and Reward throughput and latency of a server it starts, against an echo\n"
        "gRPC server as the baseline.",
        ["bandit-router bench --duration 10"],
        cmd_bench,
    )
    from bandit_router.bench.runner import add_arguments as add_bench_arguments

    add_bench_arguments(bench)

    try:
        from simulations.cli import register
    except ModuleNotFoundError as error:  # the sim extra is not installed
        _register_missing_simulations(commands, error)
    else:
        register(commands)
    _add_missing_examples(commands)
    return parser


#: Examples for the subcommands registered by ``simulations.cli``.
_SIMULATION_EXAMPLES = {
    "simulate": ["bandit-router simulate study.yaml --runs 50 --out results/"],
    "replay": ["bandit-router replay log.jsonl --target uniform --target thompson"],
    "live": ["bandit-router live study.yaml --target 127.0.0.1:50051 --runs 2"],
    "identify": ["bandit-router identify --means 0.6,0.4 --runs 400 --horizon 6000"],
}


def _register_missing_simulations(
    commands: argparse._SubParsersAction[Any], error: ModuleNotFoundError
) -> None:
    """Without the sim extra the simulation commands still exist and say what to install."""

    def missing(_: argparse.Namespace) -> int:
        raise error

    for name in _SIMULATION_EXAMPLES:
        sub = commands.add_parser(
            name,
            help=f"{name} (needs the sim extra: pip install 'bandit-router[sim]')",
            description="Needs the sim extra: pip install 'bandit-router[sim]'.",
            prefix_chars="\0",
        )
        sub.add_argument("rest", nargs=argparse.REMAINDER, help="the command's arguments")
        sub.set_defaults(func=missing)


def _add_missing_examples(commands: argparse._SubParsersAction[Any]) -> None:
    for name, examples in _SIMULATION_EXAMPLES.items():
        sub = commands.choices.get(name)
        if sub is not None and not sub.epilog:
            sub.epilog = _examples(*examples)
            sub.formatter_class = _Formatter


def _missing_extra(error: ModuleNotFoundError) -> str | None:
    """The install hint for an import that a bare client install lacks, or None."""
    top = (error.name or "").split(".")[0]
    extra = _EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return (
        f"this command needs the {extra} extra ({top} is not installed): "
        f"pip install 'bandit-router[{extra}]'"
    )


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``... | head``): stop quietly, as Unix tools do.
    stdout now points at /dev/null, so the interpreter's final flush cannot complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the signal


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # only when the shell asks: argcomplete exits itself
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        status = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else str(error)
        print(f"error: {status.name if status else 'RPC'}: {details}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as error:
        hint = _missing_extra(error)
        if hint is None:
            raise
        print(f"error: {hint}", file=sys.stderr)
        return 2
    except Exception as error:
        from bandit_router.errors import BanditRouterError

        if isinstance(error, BanditRouterError | OSError):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
