"""Specific ErrorInfo reasons: every refusal a client can act on names its reason, the
request's own field path and, where it helps, the resource and a retry delay; the documented
table of reasons is the code's. Over a real channel to a real server.

(Reasons of Reward, Route, auth, overload and store outages are checked where those are
exercised: tests/test_bad_input.py, tests/test_controls_auth.py, tests/test_admission.py.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from bandit_router import errors
from bandit_router.client import BanditClient, ClientError, ErrorReason, ResourceInfo
from bandit_router.errors import REASONS, Aborted, reasons_table
from bandit_router.serving.statuses import status_of
from bandit_router.v1 import experiment_pb2

ROOT = Path(__file__).resolve().parent.parent


def test_the_documented_reasons_are_the_code_s() -> None:
    assert list(REASONS) == list(ErrorReason)
    assert reasons_table() in (ROOT / "docs/clients.md").read_text()


def test_every_reason_is_raised_somewhere() -> None:
    """No documented reason is dead: each is named by the code that raises it, or is the
    default reason of an error class the code raises."""
    sources = [
        path.read_text()
        for path in (ROOT / "bandit_router").rglob("*.py")
        if path.name != "errors.py" or path.parent.name != "bandit_router"
    ]
    named = {m for text in sources for m in re.findall(r"ErrorReason\.([A-Z_]+)", text)}
    defaults = {
        cls.default_reason.value
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.BanditRouterError)
        and cls.default_reason is not None
        and any(re.search(rf"\b{cls.__name__}\(", text) for text in sources)
    }
    assert {reason.value for reason in ErrorReason} == named | defaults


def test_retry_info_carries_the_delay() -> None:
    error = Aborted(
        "too many concurrent updates; try again",
        "experiment",
        reason=ErrorReason.CONCURRENT_UPDATE,
        retry_delay=errors.CONFLICT_RETRY_DELAY,
    )
    details = status_of(error).details
    retry = error_details_pb2.RetryInfo()
    assert [d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details] == [False, True]
    assert details[1].Unpack(retry)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (0, 50_000_000)


def refusal(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value
    assert error.error_info is not None and error.error_info.domain == "bandit-router"
    return error


@pytest.mark.integration
def test_admin_refusals_name_reason_field_and_resource(client: BanditClient) -> None:
    client.create_experiment("shop", ["a", "b"])
    cases: list[tuple[Callable[[], Any], grpc.StatusCode, ErrorReason, str, str]] = [
        # (call, code, reason, field, resource name); the field is the request's own path.
        (
            lambda: client.get_experiment("nope"),
            grpc.StatusCode.NOT_FOUND,
            ErrorReason.EXPERIMENT_NOT_FOUND,
            "name",
            "experiments/nope",
        ),
        (
            lambda: client.delete_experiment("nope"),
            grpc.StatusCode.NOT_FOUND,
            ErrorReason.EXPERIMENT_NOT_FOUND,
            "name",
            "experiments/nope",
        ),
        (
            lambda: client.update_experiment(experiment_pb2.Experiment(name="nope")),
            grpc.StatusCode.NOT_FOUND,
            ErrorReason.EXPERIMENT_NOT_FOUND,
            "experiment.name",
            "experiments/nope",
        ),
        (
            lambda: client.pause("nope"),
            grpc.StatusCode.NOT_FOUND,
            ErrorReason.EXPERIMENT_NOT_FOUND,
            "experiment",
            "experiments/nope",
        ),
        (
            lambda: client.remove_arm("shop", "zz"),
            grpc.StatusCode.NOT_FOUND,
            ErrorReason.ARM_NOT_FOUND,
            "arm",
            "experiments/shop/arms/zz",
        ),
        (
            lambda: client.unpin("shop", unit_id="u1"),
            grpc.StatusCode.NOT_FOUND,
            ErrorReason.PIN_NOT_FOUND,
            "unit_id",
            "experiments/shop/pins/u1",
        ),
        (
            lambda: client.create_experiment("shop", ["a"]),
            grpc.StatusCode.ALREADY_EXISTS,
            ErrorReason.DUPLICATE_EXPERIMENT,
            "experiment.name",
            "experiments/shop",
        ),
        (
            lambda: client.add_arm("shop", "a"),
            grpc.StatusCode.INVALID_ARGUMENT,
            ErrorReason.DUPLICATE_ARM,
            "arm.name",
            "",
        ),
        (
            lambda: client.update_experiment(
                client.get_experiment("shop").experiment, expected_version=99
            ),
            grpc.StatusCode.ABORTED,
            ErrorReason.VERSION_MISMATCH,
            "expected_version",
            "",
        ),
        (
            lambda: client.route("shop", excluded_arms=["a", "b"]),
            grpc.StatusCode.FAILED_PRECONDITION,
            ErrorReason.NO_ELIGIBLE_ARM,
            "excluded_arms",
            "",
        ),
    ]
    for call, code, reason, field, resource in cases:
        error = refusal(call)
        assert (error.code(), error.reason, error.field) == (code, reason, field), error
        if resource:  # the type is the path's last collection: experiments/x/arms/y -> arm
            kind = resource.split("/")[-2].removesuffix("s")
            assert error.resource == ResourceInfo(kind, resource, error.message)
        else:
            assert error.resource is None
        assert error.retry_delay is None

    client.set_arm_state("shop", "b", "disabled")
    disabled = refusal(lambda: client.pin_arm("shop", "b"))
    assert (disabled.reason, disabled.field) == (ErrorReason.ARM_DISABLED, "arm")
    for last in (
        lambda: client.remove_arm("shop", "a"),
        lambda: client.set_arm_state("shop", "a", "disabled"),
    ):
        error = refusal(last)
        assert (error.code(), error.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            ErrorReason.LAST_ACTIVE_ARM,
        )
