"""Metrics and logs: what every layer may report, and nothing that serves.

A leaf: Prometheus instruments (``metrics``, with lock-free ``buffered_metrics`` for the hot
path) and logging setup with secret redaction (``logs``). Imports nothing of the service.
"""
