"""The gRPC surface: assembles the server and turns RPCs into calls on the layers below.

Owns server assembly and start-up (``server``, ``startup``, ``config``), the servicers and
their status mapping (``servicers``: a domain error becomes its canonical gRPC status here
and nowhere else), decoding guards, admission control, RPC metrics, health and the filter on
gRPC's own logs. This is the only layer that serves gRPC; everything below raises
``bandit_router.errors`` and knows nothing of channels or status codes.

May import: ``reward``, ``analysis``, ``route``, ``operations``, ``store`` and the leaves.
Imported by: ``bandit_router.cli`` only.
"""
