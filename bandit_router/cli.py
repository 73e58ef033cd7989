"""``bandit-router``: serve, operate (kubectl-style verbs over gRPC), benchmark, simulate.

Data goes to stdout (``-o table|json|yaml``), diagnostics to stderr. Destructive verbs need
``--yes`` or an answer at a terminal, and never prompt without one; ``--dry-run`` shows what
would change. Client options come from flags or ``BANDIT_ROUTER_TARGET`` / ``_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import yaml
from google.protobuf.json_format import MessageToDict

from bandit_router.operations.auth import ROLES, hash_token, new_token
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
        print(yaml.safe_dump(data, sort_keys=False), end="")
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
        print(yaml.safe_dump(data, sort_keys=False), end="")


def _experiment_rows(experiments: Any) -> list[list[str]]:
    rows = [["NAME", "POLICY", "ARMS", "PINNED", "PAUSED", "VERSION"]]
    for exp in experiments if isinstance(experiments, list) else [experiments]:
        arms = [
            arm["name"] + ("(off)" if arm.get("state") == "ARM_STATE_DISABLED" else "")
            for arm in exp.get("arms", [])
        ]
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


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.name:
            response = client.get_experiment(args.name)
            if args.output == "table":
                emit(response.experiment, "table", _experiment_rows)
                rows = [["ARM", "DECISIONS", "N", "SUM", "MEAN"]]
                for stat in response.statistics:
                    mean = stat.sum / stat.n if stat.n else 0.0
                    rows.append(
                        [
                            stat.arm,
                            str(stat.decisions),
                            f"{stat.n:g}",
                            f"{stat.sum:g}",
                            f"{mean:.4f}",
                        ]
                    )
                print()
                emit(rows, "table", lambda r: r)
            else:
                emit(response, args.output)
        else:
            emit(client.list_experiments(), args.output, _experiment_rows)
    return 0


def _load_file_experiments(path: str) -> list[Any]:
    from bandit_router.model.convert import experiment_to_pb
    from bandit_router.operations.experiment_files import load_experiments

    return [experiment_to_pb(experiment) for experiment in load_experiments(path)]


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
    with _client(args) as client:
        response = client.call_admin(
            "ListAudit", admin_pb2.ListAuditRequest(experiment=args.experiment, limit=args.limit)
        )

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
    with _client(args) as client:
        response = client.call_admin(
            "ListSnapshots", admin_pb2.ListSnapshotsRequest(experiment=args.experiment)
        )
    emit(response, "yaml" if args.output == "table" else args.output)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bandit_router.analysis.reports import render_report_table

    with _client(args) as client:
        response = client.call_admin(
            "GetReport",
            admin_pb2.GetReportRequest(experiment=args.experiment, window=_duration(args.window)),
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
    """``key=value`` arguments as a mapping; a malformed one stops with its flag named."""
    pairs: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag}: expected key=value, got {item!r}")
        pairs[key] = value
    return pairs


def cmd_route(args: argparse.Namespace) -> int:
    context: dict[str, float] = {}
    for key, value in _pairs(args.context, "--context").items():
        try:
            context[key] = float(value)
        except ValueError:
            raise SystemExit(f"--context: {key}={value!r} is not a number") from None
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
    with _client(args) as client:
        outcome = client.reward(args.decision_id, args.value)
    emit({"outcome": outcome}, args.output)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Create a token; the config (and anything that leaks it) holds only its SHA-256.

    With ``--file``: the entry is added to that tokens file in place (created if missing, see
    ``token_files``) and the token goes to stdout, once, for its holder. Without: the token
    goes to stderr and a tokens document with the one entry to stdout. The server never needs
    the token itself.
    """
    import time

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
    print(yaml.safe_dump({"tokens": [entry]}, sort_keys=False), end="")
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
    parser.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why: recorded in the audit log")


def _arm_state_request(state: experiment_pb2.ArmState) -> Callable[[argparse.Namespace], Any]:
    def build(args: argparse.Namespace) -> admin_pb2.SetArmStateRequest:
        return admin_pb2.SetArmStateRequest(
            experiment=args.experiment, arm=args.arm, state=state, reason=args.reason
        )

    return build


def build_parser() -> argparse.ArgumentParser:
    from bandit_router.serving.config import add_server_arguments

    parser = argparse.ArgumentParser(prog="bandit-router", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gRPC service")
    add_server_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    def client_command(name: str, help_text: str, func: Handler) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        _client_options(command)
        command.set_defaults(func=func)
        return command

    get = client_command("get", "list experiments, or show one with its statistics", cmd_get)
    get.add_argument("kind", choices=("experiments", "experiment"))
    get.add_argument("name", nargs="?")

    create = client_command("create", "create the experiments of a YAML/TOML file", cmd_create)
    create.add_argument("-f", "--file", required=True)
    create.add_argument("--dry-run", action="store_true")
    _reason(create)

    apply = client_command("apply", "create or update experiments to match a file", cmd_apply)
    apply.add_argument("-f", "--file", required=True)
    apply.add_argument("--dry-run", action="store_true")
    apply.add_argument(
        "--reset-statistics",
        action="store_true",
        help="also reset the statistics of the experiments updated (snapshots kept); needed "
        "when context_features or the kind of policy change",
    )
    _reason(apply)

    delete = client_command("delete", "delete an experiment and its statistics", cmd_delete)
    delete.add_argument("kind", choices=("experiment",))
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true")
    delete.add_argument("--dry-run", action="store_true")
    _reason(delete)

    pin = client_command(
        "pin",
        "send all traffic (or one unit's) to an arm",
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
    pin.add_argument("experiment")
    pin.add_argument("arm")
    pin.add_argument("--unit", default="", help="pin only this unit id (QA)")
    pin.add_argument("--ttl", type=_parse_duration, default=0.0, help="expire after e.g. 30m")
    pin.add_argument("--dry-run", action="store_true")
    _reason(pin)

    unpin = client_command(
        "unpin",
        "remove a pin",
        _admin(
            "Unpin",
            lambda a: admin_pb2.UnpinRequest(
                experiment=a.experiment, unit_id=a.unit, reason=a.reason
            ),
        ),
    )
    unpin.add_argument("experiment")
    unpin.add_argument("--unit", default="")
    unpin.add_argument("--dry-run", action="store_true")
    _reason(unpin)

    for verb, state in (
        ("disable", experiment_pb2.ARM_STATE_DISABLED),
        ("enable", experiment_pb2.ARM_STATE_ACTIVE),
    ):
        command = client_command(
            verb,
            f"{verb} an arm (kill switch)" if verb == "disable" else "enable an arm",
            _admin("SetArmState", _arm_state_request(state)),
        )
        command.add_argument("experiment")
        command.add_argument("arm")
        command.add_argument("--dry-run", action="store_true")
        _reason(command)

    add_arm = client_command(
        "add-arm",
        "add an arm to a running experiment",
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
    add_arm.add_argument("experiment")
    add_arm.add_argument("arm")
    add_arm.add_argument("--prior-n", type=float, default=0.0, help="warm start: observations")
    add_arm.add_argument("--prior-sum", type=float, default=0.0, help="warm start: sum of rewards")
    add_arm.add_argument(
        "--prior-sum-sq", type=float, default=0.0, help="warm start: sum of squares"
    )
    add_arm.add_argument("--dry-run", action="store_true")
    _reason(add_arm)

    remove_arm = client_command(
        "remove-arm",
        "remove an arm and its statistics",
        _destructive(
            "RemoveArm",
            lambda a: admin_pb2.RemoveArmRequest(
                experiment=a.experiment, arm=a.arm, reason=a.reason
            ),
            "remove arm {arm} of {experiment} and its statistics",
            "experiment",
        ),
    )
    remove_arm.add_argument("experiment")
    remove_arm.add_argument("arm")
    remove_arm.add_argument("--yes", action="store_true")
    remove_arm.add_argument("--dry-run", action="store_true")
    _reason(remove_arm)

    pause = client_command(
        "pause",
        "route to a default arm without learning",
        _admin(
            "Pause",
            lambda a: admin_pb2.PauseRequest(experiment=a.experiment, arm=a.arm, reason=a.reason),
        ),
    )
    pause.add_argument("experiment")
    pause.add_argument("--arm", default="")
    pause.add_argument("--dry-run", action="store_true")
    _reason(pause)

    resume = client_command(
        "resume",
        "resume learning",
        _admin(
            "Resume", lambda a: admin_pb2.ResumeRequest(experiment=a.experiment, reason=a.reason)
        ),
    )
    resume.add_argument("experiment")
    resume.add_argument("--dry-run", action="store_true")
    _reason(resume)

    reset = client_command(
        "reset",
        "return statistics to the prior (snapshot kept)",
        _destructive(
            "Reset",
            lambda a: admin_pb2.ResetRequest(experiment=a.experiment, reason=a.reason),
            "reset the statistics of {experiment}",
            "snapshot",
        ),
    )
    reset.add_argument("experiment")
    reset.add_argument("--yes", action="store_true")
    reset.add_argument("--dry-run", action="store_true")
    _reason(reset)

    snapshots = client_command(
        "snapshots", "list statistics snapshots taken by reset", cmd_snapshots
    )
    snapshots.add_argument("experiment")

    audit = client_command("audit", "who changed what, when and why", cmd_audit)
    audit.add_argument("experiment")
    audit.add_argument("--limit", type=int, default=100)

    report = client_command(
        "report", "per-arm posterior, probability of being best, advice", cmd_report
    )
    report.add_argument("experiment")
    report.add_argument(
        "--window", type=_parse_duration, default=3600.0, help="recent-share window"
    )
    report.add_argument("--json", action="store_true")

    export = client_command(
        "export", "export the decision log (JSON lines or VW DSJSON)", cmd_export
    )
    export.add_argument("experiment")
    export.add_argument("--format", choices=("jsonl", "dsjson"), default="jsonl")
    export.add_argument("--out", default="-", help="file, or - for stdout")
    export.add_argument("--limit", type=int, default=0)

    route = client_command("route", "ask for an arm (for trying things out)", cmd_route)
    route.add_argument("experiment")
    route.add_argument("--unit", default="")
    route.add_argument("--exclude", action="append")
    route.add_argument("--context", action="append", metavar="KEY=NUMBER", help="a numeric feature")
    route.add_argument(
        "--attribute", action="append", metavar="KEY=VALUE", help="a categorical feature"
    )

    reward = client_command("reward", "credit a reward to a decision", cmd_reward)
    reward.add_argument("decision_id")
    reward.add_argument("value", type=float)

    token = commands.add_parser("token", help="manage bearer tokens (token create ...)")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    token_create = token_commands.add_parser(
        "create", help="create a bearer token and add its hashed entry to a tokens file"
    )
    token_create.add_argument("--principal", required=True, help="who holds the token (audited)")
    token_create.add_argument("--role", choices=ROLES, required=True)
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

    schema = commands.add_parser("schema", help="print the JSON Schema of experiment files")
    schema.set_defaults(func=cmd_schema)

    bench = commands.add_parser("bench", help="benchmark Route/Reward against an echo gRPC server")
    from bandit_router.bench.runner import add_arguments as add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    try:
        from simulations.cli import register
    except ImportError:  # pragma: no cover - the distribution always ships simulations
        pass
    else:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except grpc.RpcError as error:
        code = error.code() if hasattr(error, "code") else None
        details = error.details() if hasattr(error, "details") else str(error)
        print(f"error: {code.name if code else 'RPC'}: {details}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from bandit_router.errors import BanditRouterError

        if isinstance(error, BanditRouterError | OSError):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
