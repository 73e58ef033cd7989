"""What operators own: admin verbs with their audit trail, authentication, and files.

Owns the Admin verbs (``admin``: every change validated whole, applied atomically, audited),
bearer-token authentication and the token file, and the experiment and YAML files operators
write by hand (strict loaders that name the path of every bad key).

May import: ``store``, ``model`` and the leaves.
Imported by: ``serving`` and ``bandit_router.cli``.
"""
