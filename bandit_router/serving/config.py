"""The server's configuration: one typed object, from flags with environment defaults.

Every option has a flag and a ``BANDIT_ROUTER_*`` variable (the flag wins), so the same
image runs under systemd, Kubernetes or a shell without a wrapper script.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass


class ConfigError(Exception):
    """A bad flag or ``BANDIT_ROUTER_*`` value: one ``error:`` line at start, exit status 2."""


class InvalidEnv:
    """The default of an option whose environment variable does not parse.

    Parsing happens when the parser is built, for every command; raising there would break
    ``bandit-router get`` over a variable only ``serve`` reads. The value is kept as this
    marker instead, and ``config_from_args`` refuses it with the variable's name, unless a
    flag replaced it.
    """

    def __init__(self, name: str, value: str, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected

    def __repr__(self) -> str:
        return f"<invalid {self.name}>"

    def error(self) -> ConfigError:
        shown = self.value if len(self.value) <= 40 else self.value[:40] + "..."
        return ConfigError(f"{self.name}: expected {self.expected}, got {shown!r}")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"BANDIT_ROUTER_{name}", default)


def _env_float(name: str, default: float) -> float | InvalidEnv:
    value = _env(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        return InvalidEnv(f"BANDIT_ROUTER_{name}", value, "a number")
    if not math.isfinite(number):
        return InvalidEnv(f"BANDIT_ROUTER_{name}", value, "a finite number")
    return number


def _env_int(name: str, default: int) -> int | InvalidEnv:
    value = _env(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return InvalidEnv(f"BANDIT_ROUTER_{name}", value, "an integer")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_bool(name: str, default: bool) -> bool | InvalidEnv:
    value = _env(name)
    if value is None or value == "":
        return default
    word = value.strip().lower()
    if word not in _TRUE | _FALSE:
        return InvalidEnv(f"BANDIT_ROUTER_{name}", value, "one of 1/true/yes/on or 0/false/no/off")
    return word in _TRUE


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    redis_url: str | None = None
    redis_timeout: float = 1.0
    refresh_interval: float = 0.1
    sweep_interval: float = 1.0
    #: How often each replica checks the guardrails (analysis.guardrails): a tripped rule
    #: quarantines its arm everywhere within about this plus one refresh.
    guardrail_interval: float = 0.25
    experiments_file: str | None = None
    example: bool = False
    secret: bytes | None = None
    metrics_address: str | None = None
    dashboard_address: str | None = None
    workers: int = 1
    wait_replicas: int = 0
    wait_timeout_ms: int = 100
    reward_linger: float = 0.002
    decision_linger: float = 0.025
    sticky_lookup: float = 0.05
    tokens_file: str | None = None
    router_auth: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    log_level: str = "INFO"
    log_json: bool = False
    grace: float = 10.0
    drain_delay: float = 0.0
    max_concurrent_rpcs: int = 1024
    max_pending_rpcs: int = 64
    use_uvloop: bool = True
    drift_delta: float = 0.25
    drift_threshold: float = 25.0
    wait_for_redis: float = 0.0

    def redacted_redis_url(self) -> str:
        if self.redis_url is None:
            return "embedded (not durable)"
        scheme, sep, rest = self.redis_url.partition("://")
        if "@" in rest:
            rest = "***@" + rest.split("@", 1)[1]
        return f"{scheme}{sep}{rest}"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--listen",
        default=_env("LISTEN", "127.0.0.1:50051"),
        help="host:port for gRPC [BANDIT_ROUTER_LISTEN] (default %(default)s)",
    )
    add(
        "--redis-url",
        default=_env("REDIS_URL"),
        help="redis://[user:password@]host:port/db or rediss://...; "
        "redis+cluster://host:port[,host:port...] for a Redis Cluster; "
        "redis+sentinel://host:port[,host:port...]/service_name for a primary behind "
        "Sentinel; omit for the embedded, non-durable store [BANDIT_ROUTER_REDIS_URL]",
    )
    add(
        "--redis-timeout",
        type=float,
        default=_env_float("REDIS_TIMEOUT", 1.0),
        help="seconds before a Redis call is abandoned [BANDIT_ROUTER_REDIS_TIMEOUT]",
    )
    add(
        "--refresh-interval",
        type=float,
        default=_env_float("REFRESH_INTERVAL", 0.1),
        help="seconds between cache refreshes [BANDIT_ROUTER_REFRESH_INTERVAL] (default 0.1)",
    )
    add(
        "--sweep-interval",
        type=float,
        default=_env_float("SWEEP_INTERVAL", 1.0),
        help="seconds between default-reward sweeps [BANDIT_ROUTER_SWEEP_INTERVAL]",
    )
    add(
        "--guardrail-interval",
        type=float,
        default=_env_float("GUARDRAIL_INTERVAL", 0.25),
        help="seconds between guardrail checks [BANDIT_ROUTER_GUARDRAIL_INTERVAL] (default 0.25)",
    )
    add(
        "--experiments",
        dest="experiments_file",
        default=_env("EXPERIMENTS"),
        help="YAML or TOML file of experiments created at start if missing "
        "[BANDIT_ROUTER_EXPERIMENTS]",
    )
    add(
        "--example",
        action="store_true",
        default=_env_bool("EXAMPLE", False),
        help="also create the bundled example experiment 'homepage' [BANDIT_ROUTER_EXAMPLE]",
    )
    add(
        "--metrics-address",
        default=_env("METRICS_ADDRESS"),
        help="host:port for Prometheus /metrics, e.g. 127.0.0.1:9464 "
        "[BANDIT_ROUTER_METRICS_ADDRESS]",
    )
    add(
        "--dashboard-address",
        default=_env("DASHBOARD_ADDRESS"),
        metavar="HOST:PORT",
        help="host:port for the read-only live dashboard page (GET /) and its JSON "
        "(GET /api/v1/dashboard), e.g. 127.0.0.1:8080; off when omitted "
        "[BANDIT_ROUTER_DASHBOARD_ADDRESS]",
    )
    add(
        "--workers",
        type=int,
        default=_env_int("WORKERS", 1),
        help="processes serving one port (SO_REUSEPORT); needs Redis [BANDIT_ROUTER_WORKERS]",
    )
    add(
        "--wait-replicas",
        type=int,
        default=_env_int("WAIT_REPLICAS", 0),
        help="acknowledge a Reward only after this many Redis replicas have it (WAIT) "
        "[BANDIT_ROUTER_WAIT_REPLICAS]",
    )
    add(
        "--wait-timeout-ms",
        type=int,
        default=_env_int("WAIT_TIMEOUT_MS", 100),
        help="how long a Reward waits for --wait-replicas before it is UNAVAILABLE "
        "(retryable) [BANDIT_ROUTER_WAIT_TIMEOUT_MS] (default %(default)s)",
    )
    add(
        "--reward-linger-ms",
        type=float,
        default=_env_float("REWARD_LINGER_MS", 2.0),
        help="how long a Reward waits for others to share its Redis round trip (group "
        "commit) [BANDIT_ROUTER_REWARD_LINGER_MS] (default 2)",
    )
    add(
        "--decision-linger-ms",
        type=float,
        default=_env_float("DECISION_LINGER_MS", 25.0),
        help="how long decisions are buffered before one background write (at most 256); "
        "a crash loses the default rewards and log entries of that long "
        "[BANDIT_ROUTER_DECISION_LINGER_MS] (default 25)",
    )
    add(
        "--sticky-lookup-ms",
        type=float,
        default=_env_float("STICKY_LOOKUP_MS", 50.0),
        help="how long a sticky unit's first Route on this replica waits for its assignment "
        "in Redis before the policy decides [BANDIT_ROUTER_STICKY_LOOKUP_MS] (default 50)",
    )
    add(
        "--tokens-file",
        default=_env("TOKENS_FILE"),
        help="YAML/JSON of hashed bearer tokens; enables auth [BANDIT_ROUTER_TOKENS_FILE]; "
        "BANDIT_ROUTER_TOKENS also adds principal:role:sha256 entries",
    )
    add(
        "--no-router-auth",
        dest="router_auth",
        action="store_false",
        default=_env_bool("ROUTER_AUTH", True),
        help="let Route/Reward through without a token (trusted networks) "
        "[BANDIT_ROUTER_ROUTER_AUTH=0]",
    )
    add(
        "--tls-cert",
        default=_env("TLS_CERT"),
        help="PEM certificate chain [BANDIT_ROUTER_TLS_CERT]",
    )
    add("--tls-key", default=_env("TLS_KEY"), help="PEM private key [BANDIT_ROUTER_TLS_KEY]")
    add(
        "--tls-client-ca",
        default=_env("TLS_CLIENT_CA"),
        help="PEM CA bundle: require client certificates (mutual TLS) "
        "[BANDIT_ROUTER_TLS_CLIENT_CA]",
    )
    add("--log-level", default=_env("LOG_LEVEL", "INFO"), help="[BANDIT_ROUTER_LOG_LEVEL]")
    add(
        "--log-json",
        action="store_true",
        default=_env_bool("LOG_JSON", False),
        help="JSON lines logs [BANDIT_ROUTER_LOG_JSON]",
    )
    add(
        "--grace",
        type=float,
        default=_env_float("GRACE", 10.0),
        help="seconds SIGTERM waits for in-flight calls [BANDIT_ROUTER_GRACE]",
    )
    add(
        "--max-concurrent-rpcs",
        type=int,
        default=_env_int("MAX_CONCURRENT_RPCS", 1024),
        help="Route/Reward calls in progress at most; the excess is answered "
        "RESOURCE_EXHAUSTED at once [BANDIT_ROUTER_MAX_CONCURRENT_RPCS]",
    )
    add(
        "--max-pending-rpcs",
        type=int,
        default=_env_int("MAX_PENDING_RPCS", 64),
        help="calls gRPC may hold before the server takes them; beyond it a growing share, "
        "beyond 3x all, are refused at once (CANCELLED, grpc/grpc#41785); lower it to bound "
        "queueing under overload, at the cost of refusing bursts "
        "[BANDIT_ROUTER_MAX_PENDING_RPCS]",
    )
    add(
        "--drain-delay",
        type=float,
        default=_env_float("DRAIN_DELAY", 0.0),
        help="seconds SIGTERM keeps serving while health says NOT_SERVING, so load "
        "balancers stop sending first [BANDIT_ROUTER_DRAIN_DELAY]",
    )
    add(
        "--drift-delta",
        type=float,
        default=_env_float("DRIFT_DELTA", 0.25),
        help="change tolerated by the drift detector, in standard deviations of the arm's "
        "reward [BANDIT_ROUTER_DRIFT_DELTA] (default 0.25)",
    )
    add(
        "--drift-threshold",
        type=float,
        default=_env_float("DRIFT_THRESHOLD", 25.0),
        help="drift alarm threshold in standard deviations; the default 25 keeps false alarms "
        "below 1%% per arm per 10^4 stationary rewards [BANDIT_ROUTER_DRIFT_THRESHOLD]",
    )
    add(
        "--wait-for-redis",
        type=float,
        default=_env_float("WAIT_FOR_REDIS", 0.0),
        metavar="SECONDS",
        help="at start, retry connecting to Redis for up to this long (with backoff) before "
        "giving up; for orchestrated starts where Redis may come up later "
        "[BANDIT_ROUTER_WAIT_FOR_REDIS] (default 0: fail at once)",
    )
    add("--no-uvloop", dest="use_uvloop", action="store_false", help="use asyncio's default loop")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The configuration, or ConfigError naming the flag or variable that is wrong."""
    for value in vars(args).values():
        if isinstance(value, InvalidEnv):
            raise value.error()
    secret = _env("SECRET")
    if args.workers < 1:
        raise ConfigError("--workers must be >= 1")
    if args.max_concurrent_rpcs < 1 or args.max_pending_rpcs < 1:
        raise ConfigError("--max-concurrent-rpcs and --max-pending-rpcs must be >= 1")
    if args.workers > 1 and not args.redis_url:
        raise ConfigError(
            "--workers > 1 needs --redis-url: the embedded store lives in one process"
        )
    if args.wait_replicas < 0:
        raise ConfigError("--wait-replicas must be >= 0")
    if args.wait_timeout_ms < 1:
        raise ConfigError("--wait-timeout-ms must be >= 1")
    if args.wait_replicas and not args.redis_url:
        raise ConfigError("--wait-replicas needs --redis-url: the embedded store has no replicas")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not (args.drift_delta > 0 and args.drift_threshold > 0):
        raise ConfigError("--drift-delta and --drift-threshold must be > 0")
    if args.tls_client_ca and not args.tls_cert:
        raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    if not args.guardrail_interval > 0:
        raise ConfigError("--guardrail-interval must be > 0 seconds")
    if not args.redis_timeout > 0:
        raise ConfigError("--redis-timeout must be > 0 seconds")
    if args.wait_for_redis < 0:
        raise ConfigError("--wait-for-redis must be >= 0 seconds")
    if args.dashboard_address:
        port = args.dashboard_address.rpartition(":")[2]
        if not port.isdigit() or int(port) > 65535:
            raise ConfigError(
                f"--dashboard-address: expected host:port, got {args.dashboard_address!r}"
            )
    return ServerConfig(
        listen=args.listen,
        redis_url=args.redis_url or None,
        redis_timeout=args.redis_timeout,
        refresh_interval=args.refresh_interval,
        sweep_interval=args.sweep_interval,
        guardrail_interval=args.guardrail_interval,
        experiments_file=args.experiments_file,
        example=args.example,
        secret=secret.encode() if secret else None,
        metrics_address=args.metrics_address,
        dashboard_address=args.dashboard_address or None,
        workers=args.workers,
        wait_replicas=args.wait_replicas,
        wait_timeout_ms=args.wait_timeout_ms,
        reward_linger=max(0.0, args.reward_linger_ms) / 1000.0,
        decision_linger=max(0.0, args.decision_linger_ms) / 1000.0,
        sticky_lookup=max(0.001, args.sticky_lookup_ms) / 1000.0,
        tokens_file=args.tokens_file,
        router_auth=args.router_auth,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        log_level=args.log_level,
        log_json=args.log_json,
        grace=args.grace,
        drain_delay=max(0.0, args.drain_delay),
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_pending_rpcs=args.max_pending_rpcs,
        use_uvloop=args.use_uvloop,
        drift_delta=args.drift_delta,
        drift_threshold=args.drift_threshold,
        wait_for_redis=args.wait_for_redis,
    )
