"""The shared brain: every key, every Lua script and every Redis call lives here.

Owns the Redis (or embedded) store (``redis_store``), the key layout (``keys``), the Lua
scripts that make each state change atomic (``lua/``), command packing, the permissions the
service needs (derived from the scripts), and the classification of store errors.

Knows no gRPC: it raises ``bandit_router.errors`` and the serving layer maps them.
May import: ``model`` and the leaves. Imported by every layer above it.
"""
