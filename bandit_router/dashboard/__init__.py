"""The built-in live dashboard: a read-only web page of every experiment, and its JSON.

``serve --dashboard-address HOST:PORT`` serves it from each replica (each worker under
``--workers N``, sharing the port like gRPC does). The parts, in the order a refresh uses them:

* ``traffic`` samples the fleet-wide decision counters the cache already holds, every few
  seconds, into a short ring: the traffic share over the last minutes comes from it, never
  from the decision log and never from Route or Reward.
* ``document`` turns what GetReport computes (plus the pin, pause and share history) into the
  JSON document the page polls; ``DashboardData`` computes it at most once a second however
  many pages poll.
* ``http`` serves the page, its script and the JSON from a thread of its own; only the JSON
  touches the event loop, through ``DashboardData``.

Nothing here can change an experiment: every method but GET and HEAD is refused (405).
"""
