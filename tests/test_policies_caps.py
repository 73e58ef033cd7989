"""The capped law of ``policies.controls`` when the eligible arms' caps leave traffic over.

Every eligible arm capped with caps summing to 1 - m < 1: each gets exactly its cap and the
fallback arm gets m on top of its own share (eligible or not); with no fallback that may
serve (``fallback=None``) the caps are relaxed in proportion, c / sum(c), as before. These
are identities of the construction, checked to 1e-12; the draw from the law is checked in
tests/test_router_law.py and over gRPC in tests/test_traffic_caps.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from policies.controls import cap_leftover, cap_probabilities, cap_probabilities_one

CAPS = {1: 0.2, 2: 0.35, 3: 0.3}  # arm 0 uncapped


def test_leftover_is_what_the_caps_leave_when_every_eligible_arm_is_capped() -> None:
    assert cap_leftover((1, 2, 3), CAPS) == pytest.approx(0.15, abs=1e-15)
    assert cap_leftover((1, 3), CAPS) == pytest.approx(0.5, abs=1e-15)
    assert cap_leftover((0, 1, 2, 3), CAPS) == 0.0  # arm 0 is uncapped: it takes the rest
    assert cap_leftover((), CAPS) == 0.0
    # caps written as decimals that sum to 1 leave nothing (0.1 + 0.2 is 0.30000000000000004)
    assert cap_leftover((0, 1, 2), {0: 0.1, 1: 0.2, 2: 0.7}) == 0.0


@pytest.mark.parametrize("probs", [(0.4, 0.3, 0.2, 0.1), (0.0, 0.9, 0.1, 0.0), (0, 0, 0, 1.0)])
@pytest.mark.parametrize("fallback", [0, 1, 2])
def test_the_leftover_goes_to_the_fallback_arm(probs: tuple[float, ...], fallback: int) -> None:
    """Arm 0 excluded: b, c, d capped at 0.2, 0.35, 0.3 leave m = 0.15, whatever the policy's
    law. The fallback arm gets m (a, not eligible) or its cap plus m (b, c)."""
    eligible = (1, 2, 3)
    law = cap_probabilities_one(probs, eligible, CAPS, fallback)
    expected = [0.0, 0.2, 0.35, 0.3]
    expected[fallback] += 0.15
    np.testing.assert_allclose(law, expected, atol=1e-12)
    assert sum(law) == pytest.approx(1.0, abs=1e-12)


def test_ineligible_arms_other_than_the_fallback_get_nothing() -> None:
    law = cap_probabilities_one((0.1, 0.2, 0.3, 0.2, 0.2), (1, 3), {1: 0.2, 3: 0.3}, 4)
    np.testing.assert_allclose(law, [0.0, 0.2, 0.0, 0.3, 0.5], atol=1e-12)


def test_without_a_fallback_that_may_serve_the_caps_are_relaxed_as_before() -> None:
    law = cap_probabilities_one((0.4, 0.3, 0.2, 0.1), (1, 2, 3), CAPS, None)
    np.testing.assert_allclose(law, [0.0, 0.2 / 0.85, 0.35 / 0.85, 0.3 / 0.85], atol=1e-12)
    assert cap_probabilities_one((0.4, 0.3, 0.2, 0.1), (1, 2, 3), CAPS) == law


@pytest.mark.parametrize("fallback", [None, 0, 2])
def test_the_fallback_changes_nothing_while_an_uncapped_arm_is_eligible(
    fallback: int | None,
) -> None:
    """Water filling as before: b's share above its cap is cut to the cap and the excess 0.4
    goes to the others in proportion (a, c, d at 0.2 : 0.1 : 0.1); the fallback takes
    nothing."""
    law = cap_probabilities_one((0.2, 0.6, 0.1, 0.1), (0, 1, 2, 3), CAPS, fallback)
    np.testing.assert_allclose(law, [0.4, 0.2, 0.2, 0.2], atol=1e-12)


def test_the_batch_law_is_the_scalar_law_row_by_row() -> None:
    """Rows with and without a leftover (the eligible mask differs per row), and a fallback
    arm that is eligible in some rows and not in others."""
    rng = np.random.default_rng(15)
    eligible = rng.random((3, 5, 4)) < 0.7
    eligible[..., 3] = True  # at least one eligible arm per row
    probs = rng.dirichlet(np.ones(4), size=(3, 5)) * eligible
    probs /= probs.sum(axis=-1, keepdims=True)
    leftovers = 0
    for fallback in (None, 0, 3):
        batch = cap_probabilities(probs, eligible, CAPS, fallback)
        assert batch.shape == probs.shape
        np.testing.assert_allclose(batch.sum(axis=-1), 1.0, atol=1e-12)
        for index in np.ndindex(probs.shape[:-1]):
            chosen = tuple(int(i) for i in np.flatnonzero(eligible[index]))
            scalar = cap_probabilities_one(probs[index].tolist(), chosen, CAPS, fallback)
            np.testing.assert_allclose(batch[index], scalar, atol=1e-12)
            leftover = cap_leftover(chosen, CAPS)
            if fallback is not None and leftover > 0.0:
                leftovers += 1
                own = CAPS[fallback] if fallback in chosen else 0.0
                assert scalar[fallback] == pytest.approx(own + leftover, abs=1e-12)
    assert leftovers > 0  # the seed gives rows where only capped arms are eligible
