"""bandit-router: a multi-armed bandit routing service (Route/Reward over gRPC, Redis state)."""

__version__ = "0.1.0"
