"""Signed decision ids: Reward can attribute a decision without reading a record of it.

A decision id carries what Reward needs (experiment, its incarnation, arm, propensity, time,
deadline, state version, whether the decision learns) and an HMAC over all of it, so a forged
or corrupted id is rejected before touching the store. The format is readable on purpose, for
operators reading logs: ``1~<experiment>~<incarnation>~<arm>~<propensity>~<issued ms>~
<deadline ms>~<state version>~<flags>~<nonce>~<mac>`` (nonce: 96 random bits, mac:
the first 128 bits of HMAC-SHA256, both in hex). Names are limited to [A-Za-z0-9_.-],
so ``~`` never occurs inside a field.
"""

from __future__ import annotations

import hmac
import os
import random
from typing import NamedTuple

from .errors import InvalidArgument

VERSION = "1"
SEPARATOR = "~"
MAX_LENGTH = 512
FLAG_LEARN = 1


class Decision(NamedTuple):
    experiment: str
    incarnation: str
    arm: str
    propensity: float
    issued_ms: int
    deadline_ms: int
    state_version: int
    learn: bool
    nonce: str


class DecisionSigner:
    """Issues and verifies decision ids with one shared secret (all replicas use the same)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("secret: at least 16 bytes")
        self._secret = secret

    def _mac(self, payload: str) -> str:
        return hmac.digest(self._secret, payload.encode(), "sha256")[:16].hex()

    def issue(self, decision: Decision) -> str:
        payload = (
            f"{VERSION}~{decision.experiment}~{decision.incarnation}~{decision.arm}~"
            f"{decision.propensity!r}~{decision.issued_ms}~{decision.deadline_ms}~"
            f"{decision.state_version}~{FLAG_LEARN if decision.learn else 0}~{decision.nonce}"
        )
        return f"{payload}~{self._mac(payload)}"

    def verify(self, token: str) -> Decision:
        """The decision a token stands for; InvalidArgument if malformed, forged or corrupted."""
        if not token:
            raise InvalidArgument("must not be empty", "decision_id")
        if len(token) > MAX_LENGTH:
            raise InvalidArgument(f"longer than {MAX_LENGTH} characters", "decision_id")
        payload, _, mac = token.rpartition(SEPARATOR)
        if payload.count(SEPARATOR) != 9 or not payload.startswith(VERSION + SEPARATOR):
            raise InvalidArgument(
                "malformed: not a decision id issued by bandit-router", "decision_id"
            )
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise InvalidArgument(
                "signature mismatch: forged or corrupted decision id", "decision_id"
            )
        try:
            return parse_unverified(token)
        except ValueError as error:  # only reachable with the secret; kept for safety
            raise InvalidArgument("malformed fields", "decision_id") from error


def parse_unverified(token: str) -> Decision:
    """The fields of a decision id without checking its signature: for the decision log,
    which only the service writes. ValueError if it is not a decision id."""
    parts = token.split(SEPARATOR)
    if len(parts) != 11 or parts[0] != VERSION:
        raise ValueError(f"not a decision id: {token[:40]!r}")
    return Decision(
        experiment=parts[1],
        incarnation=parts[2],
        arm=parts[3],
        propensity=float(parts[4]),
        issued_ms=int(parts[5]),
        deadline_ms=int(parts[6]),
        state_version=int(parts[7]),
        learn=bool(int(parts[8]) & FLAG_LEARN),
        nonce=parts[9],
    )


# Nonces need uniqueness, not secrecy (the id is signed): a Mersenne Twister seeded from the
# OS (and reseeded in forked workers) avoids a getrandom system call per decision.
_nonces = random.Random()
os.register_at_fork(after_in_child=_nonces.seed)


def new_nonce() -> str:
    """96 random bits: unique per decision across replicas without coordination."""
    return f"{_nonces.getrandbits(96):024x}"
