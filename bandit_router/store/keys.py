"""Every Redis key name, in one place.

All keys of one experiment carry the same hash tag ``{<experiment>}``, so every Lua script
touches a single slot and the same code runs on one Redis and on a Redis Cluster. Experiment
names are restricted to [A-Za-z0-9_.-], so they cannot break out of the tag.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "br"
EXPERIMENTS = f"{PREFIX}:experiments"  # set of experiment names
SECRET = f"{PREFIX}:secret"  # MAC key of decision ids, shared by all replicas
CHANGES_CHANNEL = f"{PREFIX}:changes"  # pub/sub: an experiment's config or arms changed
HEALTH_PROBE = f"{PREFIX}:health"  # short-lived: health checks that the store takes writes
# The keys above span experiments. Each is one key, only ever used by single-key commands
# (never inside a script with an experiment's keys), so in a Redis Cluster each simply lives
# in its own slot (the whole name hashes); the channel is sharded pub/sub there
# (SPUBLISH/SSUBSCRIBE), owned by the shard of its slot. The health probe writes
# ``br:health:{<n>}`` there instead, one ``n`` per master, so it checks every master.


@dataclass(frozen=True)
class ExperimentKeys:
    experiment: str

    @property
    def tag(self) -> str:
        return f"{PREFIX}:{{{self.experiment}}}"

    @property
    def config(self) -> str:
        """JSON of the Experiment, including its version and incarnation."""
        return f"{self.tag}:config"

    @property
    def stats(self) -> str:
        """Hash: ``<arm>:n|sum|sum_sq|decisions`` plus ``_inc`` (incarnation), ``_version``."""
        return f"{self.tag}:stats"

    @property
    def pending(self) -> str:
        """Sorted set of decisions awaiting a reward: member ``nonce|arm``, score deadline ms."""
        return f"{self.tag}:pending"

    @property
    def features(self) -> str:
        """Hash ``nonce`` -> features string of a pending decision of a contextual experiment
        (``lua/context_statistics.lua``), written and removed with its pending member."""
        return f"{self.tag}:features"

    @property
    def guard(self) -> str:
        """Hash: guardrail observations ``<arm>:<epoch>:<slot>:<rule>:n|s`` (lua/metrics.lua),
        read by the guardrail monitor, which also deletes old epochs and slots."""
        return f"{self.tag}:guard"

    @property
    def sketch(self) -> str:
        """Hash: ``<arm>:<metric>:<bucket>`` -> count, the log-bucket histogram of each
        continuous metric (``model.observations``), read by reports for quantiles."""
        return f"{self.tag}:sketch"

    @property
    def decisions(self) -> str:
        """Capped stream: flushes of decisions (a JSON array each) and reward events."""
        return f"{self.tag}:decisions"

    @property
    def audit(self) -> str:
        """Stream of operator actions; kept when the experiment is deleted."""
        return f"{self.tag}:audit"

    @property
    def snapshots(self) -> str:
        """List of JSON snapshots of the statistics taken by Reset, newest first."""
        return f"{self.tag}:snapshots"

    @property
    def sticky(self) -> str:
        """Hash ``incarnation|unit`` -> ``arm|propensity|expires|flag`` (sticky_assign.lua)."""
        return f"{self.tag}:sticky"

    @property
    def replicated(self) -> str:
        """Short-lived: written just before a WAIT, so the WAIT covers every write the
        master had applied to this experiment, even when the scripts before it wrote
        nothing (a DUPLICATE). Never read."""
        return f"{self.tag}:replicated"

    @property
    def flushed(self) -> str:
        """Hash ``writer`` -> number of the writer's last decision flush written
        (lua/record_decisions.lua), so a flush sent again after a lost reply writes nothing.
        A writer removes its field when it exits; the hash expires with a week's idleness."""
        return f"{self.tag}:flushed"

    def rewarded(self, nonce: str) -> str:
        """Dedupe marker of one decision (with a TTL): ``r<token><outcome>`` rewarded
        (``lua/reward_markers.lua``), ``d:<v>`` defaulted."""
        return f"{self.tag}:rw:{nonce}"

    def deletable(self) -> list[str]:
        """Keys removed with the experiment (the audit stream stays, to say who deleted it)."""
        return [
            self.config,
            self.stats,
            self.pending,
            self.features,
            self.guard,
            self.sketch,
            self.decisions,
            self.snapshots,
            self.sticky,
            self.replicated,
            self.flushed,
        ]


def context_fields(arm: str, dim: int) -> list[str]:
    """The statistics-hash fields of one arm's contextual statistics: the upper triangle of
    its Gram matrix A (``<arm>:A:<i>:<j>``, i <= j; A is symmetric) and its vector b
    (``<arm>:b:<i>``). Absent fields are 0."""
    gram = [f"{arm}:A:{i}:{j}" for i in range(dim) for j in range(i, dim)]
    return gram + [f"{arm}:b:{i}" for i in range(dim)]


def keys_of(key: str) -> ExperimentKeys:
    """The keys of the experiment that ``key`` (one of an experiment's keys) belongs to."""
    start, end = key.index("{"), key.index("}")
    return ExperimentKeys(key[start + 1 : end])
