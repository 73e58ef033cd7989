"""The Reward path: a reward becomes at most one statistics update, committed exactly once.

Owns applying rewards (``rewards``: validation, group commit through ``batching``, the
exactly-once outcome of each decision) and the sweeper that applies the default reward to
decisions whose window closed without one.

May import: ``route`` (decision tokens, the cache it refreshes), ``store`` and the leaves.
Imported by: ``serving``.
"""
