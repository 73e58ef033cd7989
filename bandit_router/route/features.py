"""A Route's feature vector, built from its context and attributes by the experiment's
``context_features``: pure, no I/O, no numpy (it runs once per contextual Route).

The vector is ``[1 (intercept), columns of each feature in declaration order]``: a numeric
feature is one column, ``context[name] / scale`` (0 when missing); a categorical one is
one-hot over its declared values plus an "other" column, read from ``attributes[name]``
(a value outside the declared ones, or a missing one, is "other", never an error). A
``required`` feature that is missing is INVALID_ARGUMENT naming it. Keys the experiment
does not declare are not learned from; the decision log keeps them (``context`` and
``attributes``), so reports and replays can still use them.

Everything that could make a vector unusable is refused here, before a decision is taken,
so a refused Route writes nothing: a value that is NaN or infinite (``router`` refuses it
for every experiment), or whose scaled value leaves the policies' range
(``policies.contextual.FEATURE_MAGNITUDE_LIMIT``), too many attributes, an attribute name
or value that is too long.

A contextual decision id carries the vector (``encode_features``), so Reward folds exactly
the vector the decision used into its arm's statistics, whichever replica answers it, even
before the decision's record reached the store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bandit_router.errors import InvalidArgument
from bandit_router.model.experiments import MAX_ATTRIBUTE_LENGTH, ContextFeature
from policies.contextual import FEATURE_MAGNITUDE_LIMIT

#: At most this many attributes per Route (the same limit as ``context`` entries).
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY_LENGTH = 128


def check_attributes(attributes: Mapping[str, str]) -> None:
    """InvalidArgument naming the first bad attribute (for every experiment: they are logged)."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(
            f"{len(attributes)} entries; at most {MAX_ATTRIBUTES} allowed", "attributes"
        )
    for key, value in attributes.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY_LENGTH:
            raise InvalidArgument(
                f"keys must have 1-{MAX_ATTRIBUTE_KEY_LENGTH} characters", "attributes"
            )
        if len(value) > MAX_ATTRIBUTE_LENGTH:
            raise InvalidArgument(
                f"value is {len(value)} characters long; at most {MAX_ATTRIBUTE_LENGTH} allowed",
                f"attributes[{key}]",
            )


class FeatureSpace:
    """Builds feature vectors for one experiment's ``context_features`` (built per state)."""

    def __init__(self, features: Sequence[ContextFeature]) -> None:
        self.features = tuple(features)
        self._numeric: list[tuple[str, int, float, bool]] = []
        self._categorical: list[tuple[str, dict[str, int], int, bool]] = []
        column = 1
        for feature in self.features:
            if feature.values:
                offsets = {value: column + i for i, value in enumerate(feature.values)}
                other = column + len(feature.values)
                self._categorical.append((feature.name, offsets, other, feature.required))
                column = other + 1
            else:
                self._numeric.append((feature.name, column, feature.scale, feature.required))
                column += 1
        self.dim = column

    def build(self, context: Mapping[str, float], attributes: Mapping[str, str]) -> list[float]:
        """The feature vector of one Route; InvalidArgument naming the field otherwise.

        ``context`` values are already known finite (``router.validate_route_request``).
        """
        x = [0.0] * self.dim
        x[0] = 1.0
        for name, column, scale, required in self._numeric:
            value = context.get(name)
            if value is None:
                if required:
                    raise InvalidArgument(
                        "is missing; the experiment declares this feature required",
                        f"context[{name}]",
                    )
                continue
            scaled = value / scale
            if not abs(scaled) <= FEATURE_MAGNITUDE_LIMIT:
                raise InvalidArgument(
                    f"{value!r} / scale {scale!r} is larger in magnitude than "
                    f"{FEATURE_MAGNITUDE_LIMIT:g}",
                    f"context[{name}]",
                )
            x[column] = scaled
        for name, offsets, other, required in self._categorical:
            label = attributes.get(name)
            if label is None and required:
                raise InvalidArgument(
                    "is missing; the experiment declares this feature required",
                    f"attributes[{name}]",
                )
            x[offsets.get(label, other) if label is not None else other] = 1.0
        return x

    def undeclared(self, context: Mapping[str, float], attributes: Mapping[str, str]) -> list[str]:
        """Keys of the request that no feature reads (logged, not learned from)."""
        numeric = {name for name, *_ in self._numeric}
        categorical = {name for name, *_ in self._categorical}
        return [f"context[{k}]" for k in context if k not in numeric] + [
            f"attributes[{k}]" for k in attributes if k not in categorical
        ]


#: The ".0" of a whole number's repr, where a number ends in ``encode_features``' numbers.
_WHOLE_TAIL = re.compile(r"\.0(?=[:/]|$)")


def encode_features(space: str, z: float, x: Sequence[float]) -> str:
    """``<space>/<z>/<x_0>:<x_1>:...``: what a contextual decision id and pending record
    carry (``store/lua/context_statistics.lua`` reads it). Each number is Python's shortest
    round-trip repr (Lua's tonumber reads it back exactly) without the ".0" of whole
    numbers (one-hot vectors cost a character per column), stripped by one pass of a
    regular expression over the joined reprs: it runs on every contextual Route."""
    numbers = f"{z!r}/{':'.join(map(repr, x))}"
    return f"{space}/{_WHOLE_TAIL.sub('', numbers)}"


def decode_features(text: str) -> tuple[str, float, list[float]]:
    """(space, z, x) of ``encode_features``'s string; ValueError if malformed."""
    space, z, values = text.split("/")
    return space, float(z), [float(v) for v in values.split(":")]
