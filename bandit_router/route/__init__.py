"""The Route path: one request becomes one decision with its exact propensity.

Owns the router (policy draw, pins, holdouts, exclusions), the per-replica experiment cache
that keeps Redis off the hot path, sticky assignments, the signed decision tokens, and the
recorder that writes answered decisions (and their decision-log records) to the store.

May import: ``store``, ``model``, ``policies`` and the leaves.
Imported by: ``reward``, ``analysis``, ``serving``.
"""
