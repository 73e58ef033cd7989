"""Reading what the service learned: reports and their checks, drift detection, exports.

These read the cache and the store and never change a decision or a statistic themselves
(the drift detector's opt-in policy switch goes through the store's audited update, as an
operator's change would), so they sit above the Route path and beside the Reward path.

May import: ``route``, ``store``, ``model`` and the leaves.
Imported by: ``serving`` and ``bandit_router.cli`` (export formats).
"""
