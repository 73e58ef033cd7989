"""``bandit-router bench``: throughput, latency and instruction counts against an echo server.

Benchmark tools drive the service from outside, as a user does: they start real processes and
talk over gRPC, so they import only the public client, the generated ``v1`` messages and their
own fixtures, never the service internals.
"""
