"""The experiment model: what an experiment is, validated, and its protobuf form.

A leaf every layer may read: ``experiments`` imports nothing of the service but
``bandit_router.errors``; ``convert`` maps it to and from the generated ``v1`` messages.
"""
