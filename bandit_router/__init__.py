"""bandit-router: a multi-armed bandit routing service (Route/Reward over gRPC, Redis state).

The packages are the architecture; a layer imports only the layers below it (checked by
``tests/test_architecture.py``)::

    cli                          the command line
    bench                        benchmark tools (import only the client and v1)
    serving                      the gRPC surface: server assembly, servicers, RPC metrics
    reward | analysis            the Reward path | reports, drift, exports
    route                        the Route path: router, cache, sticky, recorder, tokens
    operations                   admin verbs, auth, experiment and token files
    store                        Redis store, keys, Lua scripts
    telemetry | model | errors | tasks      leaves every layer may use

``client`` (the public Python clients) and ``v1`` (generated from ``proto/``) stand apart:
the client imports only ``v1`` and ``errors`` (the contract's ``ErrorReason``).
"""

__version__ = "0.1.0"
