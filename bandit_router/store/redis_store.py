"""The experiment state in Redis (or the embedded fakeredis): the only copy of anything.

Every change of statistics is one Lua script (lua/*.lua, each stating its invariant), so a
check and its write are one atomic step on a single slot. This module knows Redis keys and
nothing of gRPC. Calls that serve a client take a timeout: redis-py's defaults (5 s socket
timeouts, retries) could otherwise stall a call for about a minute on a hung Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from bandit_router.errors import (
    CONFLICT_RETRY_DELAY,
    Aborted,
    AlreadyExists,
    ErrorReason,
    FailedPrecondition,
    Resource,
    Unavailable,
    experiment_not_found,
)
from bandit_router.model.experiments import Experiment
from bandit_router.store.errors import STORE_ERRORS, error_code, is_store_error
from bandit_router.store.keys import (
    CHANGES_CHANNEL,
    EXPERIMENTS,
    HEALTH_PROBE,
    SECRET,
    ExperimentKeys,
    context_fields,
    keys_of,
)
from bandit_router.store.packing import use_hiredis_packing
from bandit_router.store.permissions import StoreMisconfigured
from bandit_router.store.topology import (
    Mode,
    StoreAddress,
    cluster_client,
    explain_sentinel_failure,
    parse_store_url,
    sentinel_client,
)
from policies.base import REWARD_MAGNITUDE_LIMIT
from policies.contextual import FEATURE_MAGNITUDE_LIMIT

log = logging.getLogger(__name__)

STAT_SUFFIXES = ("n", "sum", "sum_sq")
MAX_SNAPSHOTS = 50
DECISION_LOG_MAXLEN = 200_000
AUDIT_MAXLEN = 10_000
#: apply_rewards refuses (before any write) a value beyond what every policy accepts.
REWARD_LIMIT_ARG = repr(REWARD_MAGNITUDE_LIMIT)
HEALTH_PROBE_TTL_MS = 10_000
#: Life of the key written before a WAIT (``ExperimentKeys.replicated``).
REPLICATED_MARK_TTL_MS = 60_000
#: Life of an experiment's flush numbers (``ExperimentKeys.flushed``) after its last flush:
#: a writer sends a flush again until Redis answers, and the number that dedupes it must
#: outlive any store outage the writer outlasts.
FLUSH_NUMBERS_TTL_SECONDS = 7 * 24 * 3600


FEATURE_LIMIT_ARG = repr(FEATURE_MAGNITUDE_LIMIT)

#: Scripts that start with shared functions: the plain statistics (``lua/statistics.lua``)
#: or the contextual ones (``lua/context_statistics.lua``).
_PRELUDES = {
    "apply_rewards": ("statistics", "metrics", "reward_markers"),
    "apply_defaults": ("statistics",),
    "apply_context_rewards": ("context_statistics", "metrics", "reward_markers"),
    "apply_context_defaults": ("context_statistics",),
    "create_experiment": ("audit",),
    "update_experiment": ("audit",),
    "update_and_reset": ("audit",),
    "reset_statistics": ("audit",),
    "delete_experiment": ("audit",),
}


def _script_text(name: str) -> str:
    lua = resources.files("bandit_router.store").joinpath("lua")
    text = lua.joinpath(f"{name}.lua").read_text()
    for prelude in reversed(_PRELUDES.get(name, ())):
        text = lua.joinpath(f"{prelude}.lua").read_text() + text
    return text


@dataclass(frozen=True)
class AuditEntry:
    """Who did what to an experiment, when and why: written by the same script as the change
    it records (``lua/audit.lua``), so a change is never without its entry, nor an entry
    without its change."""

    principal: str
    action: str
    arguments: Mapping[str, Any]
    reason: str
    #: Unix seconds; the stream entry's ``time`` field.
    at: float = dataclasses.field(default_factory=time.time)

    def row(self) -> list[str]:
        return [
            repr(self.at),
            self.principal,
            self.action,
            json.dumps(dict(self.arguments), sort_keys=True, default=str),
            self.reason,
        ]


#: The audit entries of a change, given the experiment as the change leaves it (its new
#: version; for a deletion, the version deleted).
AuditOf = Callable[[Experiment], Sequence[AuditEntry]]


def _audit_args(entries: Sequence[AuditEntry]) -> list[str | int]:
    return [json.dumps([entry.row() for entry in entries]), AUDIT_MAXLEN]


def _no_audit(_: Experiment) -> Sequence[AuditEntry]:
    return ()


class RewardCommand(NamedTuple):
    """One reward to credit, already verified against its signed decision id."""

    experiment: str
    incarnation: str
    nonce: str
    arm: str
    value: float
    deadline_ms: int
    late_rule: str
    learn: bool
    marker_ttl_ms: int
    gamma: float
    #: Contextual decisions: the features string their signed id carries
    #: (``route.features.encode_features``); '' for plain ones.
    features: str = ""
    #: Contextual decisions: 'linear' | 'logistic' (``PolicySpec.statistics_kind``), the
    #: feature space and its dimension, from the experiment's current config.
    kind: str = ""
    space: str = ""
    dim: int = 0
    #: The reward's named metrics, ``model.metrics.encode_metrics`` ('' for none): added
    #: once to the arm's per-metric statistics by the same script that credits the reward.
    metrics: str = ""


class PendingDecision(NamedTuple):
    nonce: str
    arm: str
    deadline_ms: int

    @property
    def member(self) -> str:
        return f"{self.nonce}|{self.arm}"


class ContextualPending(NamedTuple):
    """A pending decision of a contextual experiment: its features wait beside it for the
    default reward (``lua/record_decisions.lua``)."""

    nonce: str
    arm: str
    deadline_ms: int
    features: str

    @property
    def member(self) -> str:
        return f"{self.nonce}|{self.arm}"


@dataclass(frozen=True)
class DecisionFlush:
    """One experiment's decisions of one flush, numbered by their writer and sent again
    unchanged until Redis answers: a copy that arrives after the flush was written (its
    reply lost) writes nothing (``lua/record_decisions.lua``)."""

    experiment: str
    incarnation: str
    number: int
    pending: Sequence[PendingDecision | ContextualPending]
    #: ``decision_log.encode`` of the flush's rows; '' for none.
    log_data: str
    counts: Mapping[str, int]
    #: The writer's count of what it holds for this flush (its log rows); not sent.
    buffered: int = 0


def _pending_entry(decision: PendingDecision | ContextualPending) -> str:
    # Plain Routes build PendingDecision with tuple.__new__ (three fields), hence len().
    if len(decision) > 3:
        return f"{decision[0]}|{decision[1]},{decision[2]},{decision[3]};"
    return f"{decision[0]}|{decision[1]},{decision[2]};"


@dataclass(frozen=True)
class ExperimentState:
    """An experiment's config with its raw statistics hash, read in one round trip."""

    experiment: Experiment
    stats: Mapping[str, str]

    @property
    def state_version(self) -> int:
        return int(self.stats.get("_version", 0))

    def arm_stat(self, arm: str, field: str) -> float:
        return float(self.stats.get(f"{arm}:{field}", 0.0))


@dataclass(frozen=True)
class ScriptCall:
    """A Lua script call queued in a pipeline, run by its SHA."""

    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[str | int | float]

    def add_to(self, pipe: Any) -> None:
        pipe.evalsha(self.script.sha, len(self.keys), *self.keys, *self.args)


PipelineCall = ScriptCall


def initial_arm_fields(experiment: Experiment, arm_names: Sequence[str] | None = None) -> list[str]:
    """Flat field/value pairs for the prior (warm start) statistics of the named arms (and,
    for all arms of a contextual experiment, its feature space ``_space``). A contextual
    arm's A and b start absent, that is 0: priors are the policy's lambda, never stored."""
    wanted = set(arm_names) if arm_names is not None else None
    pairs: list[str] = []
    if wanted is None and experiment.feature_space:
        pairs += ["_space", experiment.feature_space]
    for arm in experiment.arms:
        if wanted is not None and arm.name not in wanted:
            continue
        pairs += [f"{arm.name}:n", repr(arm.prior_n), f"{arm.name}:sum", repr(arm.prior_sum)]
        pairs += [f"{arm.name}:sum_sq", repr(arm.prior_sum_sq), f"{arm.name}:decisions", "0"]
    return pairs


def connect(url: str | StoreAddress | None, *, timeout: float = 1.0) -> aioredis.Redis:
    """A client for ``url`` (redis://, rediss://, unix://, redis+cluster://,
    redis+sentinel://; ``store.topology``), or the embedded store when None.

    Timeouts are short and retries few, so a hung Redis costs a caller about ``timeout``,
    not a minute; the background loops retry on their own schedule. The cluster client
    gets a few more retries: each one re-reads the slot map, which is how it finds the
    promoted replica after a failover (the caller's deadline still bounds the call).
    """
    address = url if isinstance(url, StoreAddress) else parse_store_url(url)
    if address.mode == "embedded":
        import fakeredis

        return cast(
            aioredis.Redis,
            fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True),
        )
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.005), retries=1),
        "health_check_interval": 15,
        "max_connections": 64,
    }
    if address.mode == "cluster":
        options["retry"] = Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=3)
        # RedisCluster shares the command API of Redis but not its class; the store only
        # uses what both have, and checks ``mode`` where they differ.
        return cast(aioredis.Redis, cluster_client(address, options))
    if address.mode == "sentinel":
        client = cast(aioredis.Redis, sentinel_client(address, options))
    else:
        client = aioredis.Redis.from_url(address.url or "", decode_responses=True, **options)
    use_hiredis_packing(client)
    return client


#: Parsed configs kept by ``Store._experiment_of`` (cleared when full: a refresh reparses).
MAX_PARSED_CONFIGS = 100_000


class Store:
    """Async access to experiments, statistics, rewards, decision and audit logs."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        embedded: bool = False,
        address: StoreAddress | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.client = client
        self.embedded = embedded
        self.timeout = timeout
        self.address = address or StoreAddress("embedded" if embedded else "single")
        self._apply_rewards = client.register_script(_script_text("apply_rewards"))
        self._record_decisions = client.register_script(_script_text("record_decisions"))
        self._apply_defaults = client.register_script(_script_text("apply_defaults"))
        self._create = client.register_script(_script_text("create_experiment"))
        self._update = client.register_script(_script_text("update_experiment"))
        self._reset = client.register_script(_script_text("reset_statistics"))
        self._sticky_assign = client.register_script(_script_text("sticky_assign"))
        self._apply_context_rewards = client.register_script(_script_text("apply_context_rewards"))
        self._apply_context_defaults = client.register_script(
            _script_text("apply_context_defaults")
        )
        self._update_and_reset = client.register_script(_script_text("update_and_reset"))
        self._delete = client.register_script(_script_text("delete_experiment"))
        #: name -> (config JSON, its parsed Experiment): see ``_experiment_of``.
        self._parsed: dict[str, tuple[str | bytes, Experiment]] = {}
        self._scripts = [
            self._apply_rewards,
            self._record_decisions,
            self._apply_defaults,
            self._sticky_assign,
            self._apply_context_rewards,
        ]

    @classmethod
    def from_url(cls, url: str | None, *, timeout: float = 1.0) -> Store:
        address = parse_store_url(url)
        client = connect(address, timeout=timeout)
        return cls(client, embedded=url is None, address=address, timeout=timeout)

    @property
    def mode(self) -> Mode:
        return self.address.mode

    @property
    def cluster(self) -> bool:
        return self.address.mode == "cluster"

    async def ping(self) -> None:
        """One round trip to the store (to every seed's cluster, or the Sentinels' primary).

        A Sentinel client that finds no primary says only "No master found"; this asks the
        Sentinels why, and a service they do not know is StoreMisconfigured (waiting for it
        cannot help), while no Sentinel answering stays a connection error (it can).
        """
        try:
            if self.cluster:
                await cast(Any, self.client).initialize()
            await self.client.ping()
        except MasterNotFoundError:
            unknown_service, why = await explain_sentinel_failure(self.address, self.timeout)
            if unknown_service:
                raise StoreMisconfigured(why) from None
            raise ConnectionError(why) from None

    async def check_topology(self, wait_replicas: int) -> None:
        """StoreMisconfigured unless the store is what the URL says it is and has the
        replicas ``--wait-replicas`` waits for. A plain URL at a cluster node would fail
        every call on another node's keys with MOVED; a WAIT for more replicas than exist
        would fail every Reward after its timeout: both are found here, at start."""
        if self.mode in ("single", "sentinel"):
            try:
                info = await self.client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            except ResponseError as error:
                if "NOPERM" in str(error):
                    raise
                if "unknown command" in str(error).lower():
                    await self._refuse_a_sentinel()
                info = ""  # "cluster support disabled": what we want
            if "cluster_enabled:1" in str(info) or "cluster_state" in str(info):
                raise StoreMisconfigured(
                    "this is a Redis Cluster node; use --redis-url "
                    "redis+cluster://host:port[,host:port...]"
                )
        if wait_replicas > 0:
            present = await self.replica_count()
            if present < wait_replicas:
                where = "each master has at least" if self.cluster else "the primary has"
                raise StoreMisconfigured(
                    f"--wait-replicas {wait_replicas} waits for more replicas than "
                    f"{where} ({present}); every Reward would fail"
                )

    async def _refuse_a_sentinel(self) -> None:
        """StoreMisconfigured if a redis:// URL names a Sentinel (which answers PING but
        none of the data commands), so the mistake is named rather than a refused SET."""
        try:
            role = await self.client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        except ResponseError:
            return
        if role and str(role[0]) == "sentinel":
            raise StoreMisconfigured(
                "this is a Sentinel, not a Redis data node; use --redis-url "
                "redis+sentinel://host:port[,host:port...]/service_name"
            )

    async def replica_count(self) -> int:
        """Replicas that WAIT can count on: the primary's connected replicas (ROLE, what
        WAIT counts), or in a cluster the fewest any master has (a reward may land on any
        master)."""
        if self.embedded:
            return 0
        if self.cluster:
            cluster = cast(Any, self.client)
            await cluster.initialize()
            replies = await cluster.execute_command("ROLE", target_nodes=cluster.get_primaries())
            roles = replies.values() if isinstance(replies, dict) else [replies]  # one master
            return min((len(role[2]) for role in roles), default=0)
        role = await self.client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        if not role or str(role[0]) != "master":
            raise StoreMisconfigured(
                f"this is a {role[0] if role else 'server of unknown role'}, not a primary; "
                "point --redis-url at the primary (or use redis+sentinel://)"
            )
        return len(role[2])

    async def close(self) -> None:
        await self.client.aclose()

    async def write_refusal(self, timeout: float) -> str | None:
        """Why the store would refuse a write now (``timeout``, ``OOM``, ``READONLY``...), or
        None when it accepts one. A PING passes on a replica promoted away from, under
        ``maxmemory`` and without write permission, where every Reward would fail: health
        must reflect what callers need, so this writes a short-lived probe key.

        In a cluster it writes one probe key on every master and refuses only when none
        takes it: while one shard fails over, no router is better than another (they share
        the cluster), and taking them all out of the balancer would stop Route too, which
        the cache serves meanwhile."""
        if self.cluster:
            return await self._cluster_write_refusal(timeout)
        try:
            async with asyncio.timeout(timeout):
                await self.client.set(HEALTH_PROBE, str(time.time()), px=HEALTH_PROBE_TTL_MS)
        except Exception as error:
            if is_store_error(error):
                return error_code(error)
            raise
        return None

    async def _cluster_write_refusal(self, timeout: float) -> str | None:
        cluster = cast(Any, self.client)

        async def probe(key: str) -> None:
            async with asyncio.timeout(timeout):
                await cluster.set(key, str(time.time()), px=HEALTH_PROBE_TTL_MS)

        try:
            async with asyncio.timeout(timeout):
                await cluster.initialize()
            keys = self._probe_key_per_master()
        except Exception as error:
            if is_store_error(error):
                return error_code(error)
            raise
        replies = await asyncio.gather(*(probe(key) for key in keys), return_exceptions=True)
        refusals: list[str] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                if not is_store_error(reply):
                    raise reply
                refusals.append(error_code(reply))
        return refusals[0] if refusals and len(refusals) == len(replies) else None

    def _probe_key_per_master(self) -> list[str]:
        """One health probe key in a slot of each master, from the client's slot map."""
        manager = cast(Any, self.client).nodes_manager
        masters = {nodes[0].name for nodes in manager.slots_cache.values() if nodes}
        keys: dict[str, str] = {}
        for index in range(100_000):
            if len(keys) == len(masters):
                break
            key = f"{HEALTH_PROBE}:{{{index}}}"
            nodes = manager.slots_cache.get(key_slot(key.encode()))
            if nodes:
                keys.setdefault(nodes[0].name, key)
        return list(keys.values())

    async def shared_secret(self, configured: bytes | None) -> bytes:
        """The MAC key of decision ids: configured, or created once and shared via Redis."""
        if configured:
            return configured
        await self.client.set(SECRET, secrets.token_hex(32), nx=True)
        value = await self.client.get(SECRET)
        return str(value).encode()

    # -- experiments -----------------------------------------------------------------------

    async def create_experiment(
        self, experiment: Experiment, audit: AuditOf = _no_audit
    ) -> Experiment:
        now = time.time()
        created = experiment.with_changes(
            version=1, incarnation=uuid.uuid4().hex[:12], created_at=now, updated_at=now
        )
        keys = ExperimentKeys(created.name)
        result = await self._create(
            keys=[keys.config, keys.stats, keys.audit],
            args=[
                json.dumps(created.to_json_dict()),
                created.incarnation,
                *_audit_args(audit(created)),
                *initial_arm_fields(created),
            ],
        )
        # The list of experiments spans slots, so it is a call of its own; a create retried
        # after that call failed (the experiment exists, unlisted) lists it before answering.
        await self.client.sadd(EXPERIMENTS, created.name)
        if result == "exists":
            raise AlreadyExists(
                f"experiment {created.name!r} already exists",
                "experiment.name",
                resource=Resource.experiment(created.name),
            )
        await self.publish_change(created.name)
        return created

    async def get_experiment(self, name: str) -> Experiment | None:
        raw = await self.client.get(ExperimentKeys(name).config)
        return None if raw is None else self._experiment_of(name, raw)

    async def require_experiment(self, name: str) -> Experiment:
        experiment = await self.get_experiment(name)
        if experiment is None:
            raise experiment_not_found(name)
        return experiment

    async def list_names(self) -> list[str]:
        members = await self.client.smembers(EXPERIMENTS)
        return sorted(str(member) for member in members)

    async def read_states(
        self, names: Sequence[str], *, unreadable: set[str] | None = None
    ) -> dict[str, ExperimentState]:
        """Config and statistics of many experiments in one pipelined round trip.

        With ``unreadable`` (the cache's refresh), in a cluster each master is read on its
        own and the names on a master that fails are added to it instead of failing the
        whole read (unless every master fails): while one master fails over, the others'
        experiments keep being refreshed, so their operators' changes still reach every
        replica in time. One Redis, or a Sentinel's primary, fails as a whole anyway."""
        if unreadable is not None and self.cluster and names:
            return await self._read_states_per_master(names, unreadable)
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                keys = ExperimentKeys(name)
                pipe.get(keys.config)
                pipe.hgetall(keys.stats)
            replies = await pipe.execute()
        states: dict[str, ExperimentState] = {}
        for index, name in enumerate(names):
            raw, stats = replies[2 * index], replies[2 * index + 1]
            if raw is not None:
                states[name] = ExperimentState(self._experiment_of(name, raw), stats)
        return states

    def _experiment_of(self, name: str, raw: str | bytes) -> Experiment:
        """The parsed config, reused while its JSON is unchanged. Every replica reads every
        config at each cache refresh (10 a second by default) and a parse costs 50-130 µs,
        so re-parsing unchanged configs would cost a core at about a thousand experiments;
        comparing the text costs a memcmp. Experiments are immutable, so sharing is safe."""
        known = self._parsed.get(name)
        if known is not None and known[0] == raw:
            return known[1]
        experiment = Experiment.from_json_dict(json.loads(raw))
        if len(self._parsed) >= MAX_PARSED_CONFIGS:  # deleted experiments' entries, at worst
            self._parsed.clear()
        self._parsed[name] = (raw, experiment)
        return experiment

    async def _read_states_per_master(
        self, names: Sequence[str], unreadable: set[str]
    ) -> dict[str, ExperimentState]:
        groups: dict[str, list[str]] = {}
        for name in names:
            master = self._master_name(ExperimentKeys(name).config)
            if master is None:  # its slot has no master now
                unreadable.add(name)
            else:
                groups.setdefault(master, []).append(name)
        replies = await asyncio.gather(
            *(self.read_states(group) for group in groups.values()), return_exceptions=True
        )
        states: dict[str, ExperimentState] = {}
        failures: list[BaseException] = []
        for group, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                if not is_store_error(reply):
                    raise reply
                failures.append(reply)
                unreadable.update(group)
            else:
                states.update(reply)
        if failures and not states:
            raise failures[0]
        return states

    async def read_state(self, name: str) -> ExperimentState:
        states = await self.read_states([name])
        if name not in states:
            raise experiment_not_found(name)
        return states[name]

    async def list_experiments(self) -> list[Experiment]:
        states = await self.read_states(await self.list_names())
        return [state.experiment for state in states.values()]

    async def update_experiment(
        self,
        name: str,
        change: Callable[[Experiment], Experiment],
        *,
        expected_version: int = 0,
        attempts: int = 20,
        reset_header: Mapping[str, Any] | None = None,
        audit: AuditOf = _no_audit,
    ) -> tuple[Experiment, Experiment]:
        """Apply ``change`` to the current config with compare-and-set; (before, after).

        Without ``expected_version`` a conflicting concurrent update is retried against the
        new version; with it, a conflict is ABORTED so the operator can look again.

        A change that alters what the statistics mean (``Experiment.needs_reset_to_become``)
        is FAILED_PRECONDITION unless ``reset_header`` is given: then the config and fresh
        statistics are written in one script (``lua/update_and_reset.lua``) and the old
        statistics kept as a snapshot with this header.

        ``audit`` gives the change's audit entries from the new config; the same script
        writes them.
        """
        keys = ExperimentKeys(name)
        for _ in range(attempts):
            before = await self.require_experiment(name)
            if expected_version and before.version != expected_version:
                raise Aborted(
                    f"experiment is at version {before.version}, not {expected_version}",
                    "expected_version",
                )
            after = change(before).validated()
            after = after.with_changes(
                name=before.name,
                version=before.version + 1,
                incarnation=before.incarnation,
                created_at=before.created_at,
                updated_at=time.time(),
            )
            if before.needs_reset_to_become(after) or reset_header is not None:
                if reset_header is None:
                    raise FailedPrecondition(
                        "this change alters what the statistics mean (context_features or "
                        "the kind of policy); ask for reset_statistics to apply it with a "
                        "reset (the old statistics are kept as a snapshot)",
                        "reset_statistics",
                        reason=ErrorReason.RESET_REQUIRED,
                    )
                result = await self._update_and_reset(
                    keys=[
                        keys.config,
                        keys.stats,
                        keys.snapshots,
                        keys.pending,
                        keys.features,
                        keys.audit,
                    ],
                    args=[
                        str(before.version),
                        json.dumps(after.to_json_dict()),
                        json.dumps(dict(reset_header)),
                        MAX_SNAPSHOTS,
                        *_audit_args(audit(after)),
                        *initial_arm_fields(after),
                    ],
                )
                if result == "gone":
                    raise experiment_not_found(name)
                if result == "ok":
                    await self.publish_change(name)
                    return before, after
                if expected_version:
                    raise Aborted(
                        "experiment changed concurrently; read it again", "expected_version"
                    )
                continue
            added = [arm for arm in after.arm_names if arm not in before.arm_names]
            removed = [arm for arm in before.arm_names if arm not in after.arm_names]
            init = initial_arm_fields(after, added)
            drop = [
                f"{arm}:{suffix}" for arm in removed for suffix in (*STAT_SUFFIXES, "decisions")
            ]
            dim = len(before.feature_columns)
            if before.policy.contextual:
                drop += [field for arm in removed for field in context_fields(arm, dim)]
            result = await self._update(
                keys=[keys.config, keys.stats, keys.audit],
                args=[
                    str(before.version),
                    json.dumps(after.to_json_dict()),
                    *_audit_args(audit(after)),
                    len(init) // 2,
                    *init,
                    *drop,
                ],
            )
            if result == "gone":
                raise experiment_not_found(name)
            if result == "ok":
                await self.publish_change(name)
                return before, after
            if expected_version:
                raise Aborted("experiment changed concurrently; read it again", "expected_version")
        raise Aborted(
            "too many concurrent updates; try again",
            "experiment",
            reason=ErrorReason.CONCURRENT_UPDATE,
            retry_delay=CONFLICT_RETRY_DELAY,
        )

    async def delete_experiment(
        self, name: str, audit: AuditOf = _no_audit, *, attempts: int = 20
    ) -> Experiment:
        """Delete ``name``'s keys (not its audit stream) with its audit entries, in one
        script; then unlist it (a call of its own: the list spans slots)."""
        keys = ExperimentKeys(name)
        for _ in range(attempts):
            experiment = await self.get_experiment(name)
            if experiment is None:  # also unlisted, in case a deletion stopped in between
                await self.client.srem(EXPERIMENTS, name)
                raise experiment_not_found(name)
            result = await self._delete(
                keys=[keys.config, keys.audit, *(k for k in keys.deletable() if k != keys.config)],
                args=[str(experiment.version), *_audit_args(audit(experiment))],
            )
            if result in ("ok", "gone"):  # gone: this call's own resent script, or another
                await self.client.srem(EXPERIMENTS, name)
                await self.publish_change(name)
                return experiment
        raise Aborted(
            "too many concurrent updates; try again",
            "experiment",
            reason=ErrorReason.CONCURRENT_UPDATE,
            retry_delay=CONFLICT_RETRY_DELAY,
        )

    async def reset_statistics(
        self, experiment: Experiment, header: Mapping[str, Any], audit: AuditOf = _no_audit
    ) -> None:
        keys = ExperimentKeys(experiment.name)
        result = await self._reset(
            keys=[keys.stats, keys.snapshots, keys.audit],
            args=[
                json.dumps(dict(header)),
                MAX_SNAPSHOTS,
                *_audit_args(audit(experiment)),
                *initial_arm_fields(experiment),
            ],
        )
        if result == "gone":
            raise experiment_not_found(experiment.name)
        await self.publish_change(experiment.name)

    async def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        raw = await self.client.lrange(ExperimentKeys(name).snapshots, 0, -1)
        return [json.loads(item) for item in raw]

    async def publish_change(self, name: str) -> None:
        """Tell every replica to refresh ``name`` now rather than at its next interval.

        In a cluster the notice is sharded pub/sub (SPUBLISH): it goes to the one shard that
        owns the channel's slot instead of being broadcast over the cluster bus to every
        node, and its subscribers follow that shard through a failover."""
        try:
            if self.cluster:
                await cast(Any, self.client).spublish(CHANGES_CHANNEL, name)
            else:
                await self.client.publish(CHANGES_CHANNEL, name)
        except STORE_ERRORS as error:
            # The change is written; only the shortcut failed (in a cluster the channel's
            # shard may be failing over while the experiment's is fine). Every replica's
            # next refresh delivers it; failing the operator's call would not undo it.
            log.warning("change notice for %s not sent (%s); replicas refresh anyway", name, error)

    def change_notices(self) -> ChangeNotices:
        """A new subscription to change notices (``ChangeNotices``); close it after use."""
        return ChangeNotices(self.client, sharded=self.cluster)

    # -- rewards ---------------------------------------------------------------------------

    async def apply_rewards(
        self,
        commands: Sequence[RewardCommand],
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
    ) -> list[str | Exception]:
        """Credit a group commit's rewards: one ``apply_rewards`` script call per experiment
        (and per late rule and discount, which a refresh may change between two rewards), all
        in one pipeline. Returns each command's outcome, or the error of its script call.

        With ``wait_replicas`` the pipeline ends with a WAIT on the master of each
        experiment, on the connection that ran its script (WAIT counts replicas that have
        this connection's writes, nothing else); a group whose master heard from fewer
        replicas gets UNAVAILABLE instead of its outcome: it may be lost on failover, and a
        retry is safe (the dedupe marker makes it DUPLICATE if it survived)."""
        groups: dict[tuple[str, str, str, float, str, str, int], list[int]] = {}
        for index, command in enumerate(commands):
            group = (
                command.experiment,
                command.incarnation,
                command.late_rule,
                command.gamma,
                command.kind,
                command.space,
                command.dim,
            )
            groups.setdefault(group, []).append(index)
        calls: list[PipelineCall] = []
        for (name, incarnation, late_rule, gamma, kind, space, dim), indices in groups.items():
            keys = ExperimentKeys(name)
            group_commands = [commands[i] for i in indices]
            if kind:
                calls.append(
                    _context_reward_call(
                        self._apply_context_rewards,
                        keys,
                        (incarnation, late_rule, gamma, kind, space, dim),
                        group_commands,
                    )
                )
                continue
            calls.append(
                ScriptCall(
                    self._apply_rewards,
                    [
                        keys.stats,
                        keys.pending,
                        keys.decisions,
                        keys.guard,
                        keys.sketch,
                        *(keys.rewarded(c.nonce) for c in group_commands),
                    ],
                    [
                        incarnation,
                        late_rule,
                        repr(gamma),
                        DECISION_LOG_MAXLEN,
                        "".join(
                            f"{c.arm}|{float(c.value)!r}|{c.deadline_ms}|{1 if c.learn else 0}|"
                            f"{c.marker_ttl_ms}|{c.nonce}{'|' + c.metrics if c.metrics else ''};"
                            for c in group_commands
                        ),
                        REWARD_LIMIT_ARG,
                        marker_token(),
                    ],
                )
            )
        replies = await self._execute(calls, wait_replicas, wait_timeout_ms)
        results: list[str | Exception] = [""] * len(commands)
        for indices, reply in zip(groups.values(), replies, strict=True):
            if isinstance(reply, Exception):
                for index in indices:
                    results[index] = reply
                continue
            for index, outcome in zip(indices, reply, strict=True):
                results[index] = str(outcome)
        return results

    async def _execute(
        self, calls: Sequence[PipelineCall], wait_replicas: int = 0, wait_timeout_ms: int = 100
    ) -> list[Any]:
        """One pipelined round trip; scripts run by EVALSHA, loaded only when Redis lacks them.

        redis-py's pipelined Script objects ask SCRIPT EXISTS first, a second round trip per
        flush; NOSCRIPT means the script did not run, so re-running just those calls is safe.
        A promoted replica has no scripts (SCRIPT LOAD is not replicated), so after a
        failover the first call of each script takes this path. With ``wait_replicas`` a
        reply whose master did not confirm that many replicas becomes UNAVAILABLE.
        """
        if wait_replicas:
            replies = await self._run_and_wait(calls, wait_replicas, wait_timeout_ms)
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                await self._load_scripts()
                rerun = await self._run_and_wait(
                    [calls[i] for i in missing], wait_replicas, wait_timeout_ms
                )
                for index, reply in zip(missing, rerun, strict=True):
                    replies[index] = reply
            return replies
        if len(calls) == 1:  # a lone command skips the Pipeline machinery (~25% of its cost)
            call = calls[0]
            try:
                replies = [
                    await self.client.evalsha(
                        call.script.sha, len(call.keys), *call.keys, *call.args
                    )
                ]
            except ResponseError as error:  # NoScriptError included; re-raised as a reply
                replies = [error]
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                for call in calls:
                    call.add_to(pipe)
                replies = await pipe.execute(raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await self._load_scripts()
            async with self.client.pipeline(transaction=False) as pipe:
                for index in missing:
                    calls[index].add_to(pipe)
                again: list[Any] = await pipe.execute(raise_on_error=False)
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        return replies

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD of every pipelined script; in a cluster on every master, named
        explicitly rather than left to the client's default routing: a master without
        the script would answer NOSCRIPT to every retry."""
        for script in self._scripts:
            if self.cluster:
                cluster = cast(Any, self.client)
                await cluster.execute_command(
                    "SCRIPT LOAD", script.script, target_nodes=cluster.get_primaries()
                )
            else:
                await self.client.script_load(script.script)

    async def _run_and_wait(
        self, calls: Sequence[PipelineCall], replicas: int, timeout_ms: int
    ) -> list[Any]:
        """Run ``calls`` and then, per master, a short write and ``WAIT replicas timeout``,
        in one pipeline; each call's reply, or UNAVAILABLE when its master's WAIT fell short.

        The pipeline sends each master's commands in order on one connection, so the WAIT
        follows its scripts' writes on the same connection. The short write (a SET of
        ``ExperimentKeys.replicated``) matters when a script wrote nothing, as for a
        DUPLICATE: WAIT then still covers everything the master had applied before, such as
        the first attempt of that reward, which may not have reached a replica yet.
        """
        masters: dict[str, tuple[Any, str]] = {}  # master -> (cluster node or None, its key)
        call_master: list[str | BaseException] = []
        for call in calls:
            try:
                node = self._master_of(call.keys[0])
            except STORE_ERRORS as error:  # its slot has no master now (a failover)
                call_master.append(error)
                continue
            name = node.name if node is not None else ""
            masters.setdefault(name, (node, call.keys[0]))
            call_master.append(name)
        sent = [
            call for call, name in zip(calls, call_master, strict=True) if isinstance(name, str)
        ]
        async with self.client.pipeline(transaction=False) as pipe:
            for call in sent:
                call.add_to(pipe)
            for node, key in masters.values():
                mark = keys_of(key).replicated
                target: dict[str, Any] = {"target_nodes": node} if node is not None else {}
                pipe.execute_command("SET", mark, "1", "PX", REPLICATED_MARK_TTL_MS, **target)
                pipe.execute_command("WAIT", replicas, timeout_ms, **target)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        waited = replies[len(sent) :]
        acknowledged: dict[str, Any] = {}
        for index, name in enumerate(masters):
            mark_reply, wait_reply = waited[2 * index], waited[2 * index + 1]
            acknowledged[name] = mark_reply if isinstance(mark_reply, Exception) else wait_reply
        script_replies = iter(replies[: len(sent)])
        results: list[Any] = []
        for call, name in zip(calls, call_master, strict=True):
            if not isinstance(name, str):
                results.append(name)
                continue
            reply, ack = next(script_replies), acknowledged[name]
            if isinstance(reply, Exception) or _is_refusal(reply):
                results.append(reply)  # nothing was written: nothing to wait for
            elif isinstance(ack, Exception):
                results.append(ack)  # the master went away after the script: a store error
            elif self.cluster and self._master_name(call.keys[0]) != name:
                # The client followed a MOVED/ASK: the script ran on another master than
                # the one that WAITed, so nothing confirms its replicas.
                results.append(
                    Unavailable(
                        "the experiment moved to another master during the reward; safe to retry"
                    )
                )
            elif _confirmed(ack) < replicas:
                results.append(
                    Unavailable(
                        f"only {_confirmed(ack)} of {replicas} replicas acknowledged in "
                        f"{timeout_ms} ms; the reward may be lost on failover; safe to retry"
                    )
                )
            else:
                results.append(reply)
        return results

    def _master_of(self, key: str) -> Any:
        """The cluster node that holds ``key`` now (None on one Redis or a Sentinel's
        primary: there, the pipeline's one connection is the master's)."""
        return cast(Any, self.client).get_node_from_key(key) if self.cluster else None

    def _master_name(self, key: str) -> str | None:
        try:
            return str(self._master_of(key).name)
        except STORE_ERRORS:
            return None

    # -- decisions -------------------------------------------------------------------------

    async def record_decisions(
        self, writer: str, flushes: Sequence[DecisionFlush]
    ) -> list[BaseException | None]:
        """Write flushes of decisions (pending records, log entries, decision counters) in one
        pipeline, off the Route path; per flush, the error Redis answered, or None once it is
        written (now or by an earlier copy). Raises when the round trip itself fails, after
        which any of the flushes may or may not have been written."""
        calls: list[PipelineCall] = []
        for flush in flushes:
            keys = ExperimentKeys(flush.experiment)
            args: list[str | int] = [
                flush.incarnation,
                DECISION_LOG_MAXLEN,
                # One log document per flush: packing a command (or even a JSON document)
                # per decision would cost the server more than choosing the arm did.
                flush.log_data,
                writer,
                flush.number,
                FLUSH_NUMBERS_TTL_SECONDS,
                len(flush.counts),
            ]
            for arm, count in flush.counts.items():
                args += [arm, count]
            args.append("".join(map(_pending_entry, flush.pending)))
            calls.append(
                ScriptCall(
                    self._record_decisions,
                    [
                        keys.stats,
                        keys.pending,
                        keys.decisions,
                        keys.features,
                        keys.flushed,
                        *(keys.rewarded(d.nonce) for d in flush.pending),
                    ],
                    args,
                )
            )
        replies = await self._execute(calls)
        return [reply if isinstance(reply, BaseException) else None for reply in replies]

    async def forget_writer(self, writer: str, experiments: Iterable[str]) -> None:
        """Remove a writer's flush numbers once it has nothing left to send (at exit)."""
        for experiment in experiments:  # one slot each in a cluster: one command each
            await self.client.hdel(ExperimentKeys(experiment).flushed, writer)

    async def assign_sticky(
        self,
        name: str,
        field: str,
        value: str,
        now: float,
        ttl_seconds: int,
        active_arms: Sequence[str],
    ) -> str | None:
        """Store ``value`` as ``field``'s sticky assignment unless a valid one is stored;
        returns the stored one that was kept, None when ``value`` was written."""
        (reply,) = await self._execute(
            [
                ScriptCall(
                    self._sticky_assign,
                    [ExperimentKeys(name).sticky],
                    [field, value, repr(now), ttl_seconds, ",".join(active_arms)],
                )
            ]
        )
        if isinstance(reply, Exception):
            raise reply
        return str(reply) if reply else None

    async def read_guard(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """The guardrail observation hashes of ``names`` in one pipelined round trip
        (``ExperimentKeys.guard``; the guardrail monitor's read)."""
        if not names:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(ExperimentKeys(name).guard)
            replies = await pipe.execute()
        return {
            name: {str(field): str(value) for field, value in (reply or {}).items()}
            for name, reply in zip(names, replies, strict=True)
        }

    async def drop_guard_fields(self, name: str, fields: Sequence[str]) -> None:
        """Forget old epochs and slots of an experiment's guardrail observations."""
        if fields:
            await self.client.hdel(ExperimentKeys(name).guard, *fields)

    async def read_sketch(self, name: str) -> dict[str, str]:
        """An experiment's quantile sketches: ``<arm>:<metric>:<bucket>`` -> count."""
        raw = await self.client.hgetall(ExperimentKeys(name).sketch)
        return {str(field): str(count) for field, count in (raw or {}).items()}

    async def read_decision_log(
        self, name: str, start: str = "-", count: int = 1000
    ) -> list[tuple[str, dict[str, str]]]:
        """Entries of the decision log from stream id ``start`` ("(" + id: after it)."""
        entries = await self.client.xrange(ExperimentKeys(name).decisions, start, "+", count=count)
        return cast(list[tuple[str, dict[str, str]]], list(entries or []))

    async def due_pending(self, name: str, now_ms: int, limit: int) -> list[str]:
        members = await self.client.zrangebyscore(
            ExperimentKeys(name).pending, "-inf", now_ms, start=0, num=limit
        )
        return [str(member) for member in members]

    async def apply_defaults(
        self, experiment: Experiment, members: Sequence[str], marker_ttl_ms: int, gamma: float
    ) -> list[str]:
        """Credit the default reward to due members; returns the arms credited (once each)."""
        if not members or experiment.default_reward is None:
            return []
        keys = ExperimentKeys(experiment.name)
        nonces = [member.split("|", 1)[0] for member in members]
        if experiment.policy.contextual:
            credited = await self._apply_context_defaults(
                keys=[
                    keys.stats,
                    keys.pending,
                    keys.decisions,
                    keys.features,
                    *(keys.rewarded(n) for n in nonces),
                ],
                args=[
                    experiment.incarnation,
                    repr(experiment.default_reward),
                    marker_ttl_ms,
                    repr(gamma),
                    DECISION_LOG_MAXLEN,
                    experiment.policy.statistics_kind,
                    len(experiment.feature_columns),
                    FEATURE_LIMIT_ARG,
                    *members,
                ],
            )
            return [str(arm) for arm in credited]
        credited = await self._apply_defaults(
            keys=[keys.stats, keys.pending, keys.decisions, *(keys.rewarded(n) for n in nonces)],
            args=[
                experiment.incarnation,
                repr(experiment.default_reward),
                marker_ttl_ms,
                repr(gamma),
                DECISION_LOG_MAXLEN,
                *members,
            ],
        )
        return [str(arm) for arm in credited]

    # -- audit -----------------------------------------------------------------------------

    async def list_audit(
        self, name: str, limit: int, *, before: str | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """At most ``limit`` entries, newest first, older than the entry id ``before``."""
        newest = "+" if before is None else f"({before}"
        entries = await self.client.xrevrange(ExperimentKeys(name).audit, newest, "-", count=limit)
        return cast(list[tuple[str, dict[str, str]]], list(entries or []))


#: apply_rewards outcomes that wrote nothing (the script checks before its first write): a
#: caller gets them even when the WAIT fell short, rather than UNAVAILABLE and a retry that
#: can only hear them again.
_REFUSALS = frozenset({"gone", "no_arm", "invalid", "stale"})


def _context_reward_call(
    script: AsyncScript,
    keys: ExperimentKeys,
    group: tuple[str, str, float, str, str, int],
    commands: Sequence[RewardCommand],
) -> ScriptCall:
    """The ``apply_context_rewards`` call of one group of contextual rewards."""
    incarnation, late_rule, gamma, kind, space, dim = group
    return ScriptCall(
        script,
        [
            keys.stats,
            keys.pending,
            keys.decisions,
            keys.features,
            keys.guard,
            keys.sketch,
            *(keys.rewarded(c.nonce) for c in commands),
        ],
        [
            incarnation,
            late_rule,
            repr(gamma),
            DECISION_LOG_MAXLEN,
            "".join(
                f"{c.arm}|{float(c.value)!r}|{c.deadline_ms}|{1 if c.learn else 0}|"
                f"{c.marker_ttl_ms}|{c.nonce}|{c.features}{'|' + c.metrics if c.metrics else ''};"
                for c in commands
            ),
            REWARD_LIMIT_ARG,
            space,
            kind,
            dim,
            FEATURE_LIMIT_ARG,
            marker_token(),
        ],
    )


def marker_token() -> str:
    """A reward call's token in the markers it sets (``lua/reward_markers.lua``): 8
    characters, so that a resent call knows its own markers from another call's."""
    return secrets.token_urlsafe(6)


def _is_refusal(reply: Any) -> bool:
    if isinstance(reply, list):  # apply_rewards answers one outcome per reward of its group
        return bool(reply) and all(str(outcome) in _REFUSALS for outcome in reply)
    return str(reply) in _REFUSALS


def _confirmed(reply: Any) -> int:
    """Replicas a WAIT reply counts (0 for an error, which a caller reports separately)."""
    if isinstance(reply, Exception):
        return 0
    if isinstance(reply, dict):  # a cluster reply keyed by node
        return min((int(v) for v in reply.values()), default=0)
    return int(reply)


class ChangeNotices:
    """One subscription to the change channel: plain pub/sub on one Redis or a Sentinel
    primary, sharded pub/sub (SSUBSCRIBE) in a cluster, where redis-py re-subscribes on the
    shard's new master after a failover. A lost subscription raises a store error; the
    caller makes a new one (a notice missed meanwhile is caught by its next refresh)."""

    def __init__(self, client: Any, *, sharded: bool) -> None:
        self._pubsub = client.pubsub()
        self._sharded = sharded

    async def subscribe(self) -> None:
        if self._sharded:
            await self._pubsub.ssubscribe(CHANGES_CHANNEL)
        else:
            await self._pubsub.subscribe(CHANGES_CHANNEL)

    async def next(self, timeout: float) -> str | None:
        """The name of the next changed experiment, or None if none came in ``timeout``."""
        if self._sharded:
            message = await self._pubsub.get_sharded_message(
                ignore_subscribe_messages=True, timeout=timeout
            )
        else:
            message = await self._pubsub.get_message(
                ignore_subscribe_messages=True, timeout=timeout
            )
        if message is None or message.get("type") not in ("message", "smessage"):
            return None
        return str(message["data"])

    async def aclose(self) -> None:
        # aclose is untyped in some redis-py releases: a typed alias suits all of them.
        close: Callable[[], Awaitable[None]] = self._pubsub.aclose
        await close()
