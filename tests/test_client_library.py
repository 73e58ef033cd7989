"""The Python clients as a gRPC client library: typed errors from the status and its details,
enums for reason and outcome, typed Admin methods on both clients, and a caller's own channel,
channel options and interceptors. Against a real server over loopback gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from bandit_router.client import (
    AlreadyExists,
    ArmState,
    AsyncBanditClient,
    BanditClient,
    ClientError,
    ErrorReason,
    InvalidArgument,
    NotFound,
    Outcome,
    Reason,
    ResourceInfo,
)
from bandit_router.v1 import experiment_pb2

from .servers import ServerThread

pytestmark = pytest.mark.integration


def test_typed_admin_methods_and_enums(client: BanditClient) -> None:
    created = client.create_experiment("lib", ["a", "b"], reason="typed")
    assert [arm.name for arm in created.arms] == ["a", "b"]
    assert client.add_arm("lib", "c", prior_n=2, prior_sum=1).arms[2].prior_n == 2
    disabled = client.set_arm_state("lib", "c", ArmState.DISABLED)
    assert disabled.arms[2].state == experiment_pb2.ARM_STATE_DISABLED
    assert (
        client.set_arm_state("lib", "c", "active").arms[2].state == experiment_pb2.ARM_STATE_ACTIVE
    )
    assert client.pin_arm("lib", "b", ttl=60).pin.arm == "b"
    decision = client.route("lib", "u1")
    assert decision.arm == "b" and decision.reason is Reason.PINNED
    assert client.reward(decision.decision_id, 1.0) is Outcome.APPLIED
    assert client.reward(decision.decision_id, 1.0) is Outcome.DUPLICATE
    assert client.unpin("lib").pin.arm == ""
    assert client.pause("lib", arm="a").paused
    assert client.route("lib").reason is Reason.PAUSED
    assert not client.resume("lib").paused
    assert [arm.name for arm in client.remove_arm("lib", "c").arms] == ["a", "b"]
    assert [arm.arm for arm in client.get_report("lib", window=60).arms] == ["a", "b"]
    assert [e.name for e in client.list_experiments()] == ["lib"]
    assert client.get_experiment("lib").experiment.name == "lib"
    assert client.list_audit("lib")[0].action == "remove_arm"  # newest first


def test_typed_errors_carry_status_details(client: BanditClient) -> None:
    with pytest.raises(NotFound) as missing:
        client.route("nowhere")
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert missing.value.field == "experiment"  # from the ErrorInfo detail
    assert missing.value.reason == "EXPERIMENT_NOT_FOUND"  # a StrEnum: strings compare equal
    assert missing.value.resource is not None
    assert missing.value.resource.name == "experiments/nowhere"
    assert missing.value.retry_delay is None
    assert isinstance(missing.value, grpc.RpcError)  # code catching RpcError still works
    with pytest.raises(InvalidArgument) as bad:
        client.create_experiment("bad", ["a", "a"])
    assert [v.field for v in bad.value.field_violations] == ["experiment.arms[1].name"]
    assert "duplicate arm name" in bad.value.field_violations[0].description
    assert bad.value.reason is ErrorReason.DUPLICATE_ARM
    client.create_experiment("twice", ["a"])
    with pytest.raises(AlreadyExists) as exists:
        client.create_experiment("twice", ["a"])
    assert exists.value.reason is ErrorReason.DUPLICATE_EXPERIMENT
    assert exists.value.field == "experiment.name"
    assert exists.value.resource is not None
    assert exists.value.resource.name == "experiments/twice"


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """Records every method and adds a header: proof the interceptor ran on the call."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        self.methods.append(details.method)
        return continuation(details, request)


def test_own_channel_options_and_interceptors(embedded_server: ServerThread) -> None:
    recorder = Recorder()
    with BanditClient(
        embedded_server.target,
        options=[("grpc.primary_user_agent", "lib-test")],
        interceptors=[recorder],
        timeout=5,
    ) as client:
        client.create_experiment("own", ["a"])
        client.route("own")
    assert recorder.methods == [
        "/bandit_router.v1.Admin/CreateExperiment",
        "/bandit_router.v1.Router/Route",
    ]
    channel = grpc.insecure_channel(embedded_server.target)
    with BanditClient(channel=channel, timeout=5) as client:
        assert client.route("own").arm == "a"
    # The caller's channel is the caller's: the client did not close it.
    with BanditClient(channel=channel, timeout=5) as client:
        assert client.route("own").arm == "a"
    channel.close()
    with pytest.raises(ValueError, match="belong to the channel"):
        BanditClient(embedded_server.target, channel=channel)


class AsyncRecorder(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self) -> None:
        self.methods: list[bytes] = []

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        self.methods.append(client_call_details.method)
        return await continuation(client_call_details, request)


def test_async_client_typed_methods_errors_and_interceptors(
    embedded_server: ServerThread,
) -> None:
    recorder = AsyncRecorder()

    async def scenario() -> None:
        async with AsyncBanditClient(
            embedded_server.target, timeout=5, interceptors=[recorder]
        ) as client:
            await client.create_experiment("aio", ["a", "b"])
            assert (await client.pin_arm("aio", "a")).pin.arm == "a"
            decision = await client.route("aio")
            assert decision.reason is Reason.PINNED
            assert await client.reward(decision.decision_id, 0.5) is Outcome.APPLIED
            await client.unpin("aio")
            await client.set_arm_state("aio", "b", ArmState.DISABLED)
            assert (await client.route("aio")).arm == "a"
            await client.add_arm("aio", "c")
            await client.remove_arm("aio", "c")
            assert (await client.pause("aio")).paused
            assert not (await client.resume("aio")).paused
            assert len((await client.get_report("aio")).arms) == 2
            assert [e.name for e in await client.list_experiments()] == ["aio"]
            with pytest.raises(NotFound) as missing:
                await client.get_experiment("nowhere")
            # GetExperimentRequest names its experiment `name`: the field path a client sent.
            assert missing.value.field == "name"  # from the ErrorInfo detail
            assert missing.value.reason is ErrorReason.EXPERIMENT_NOT_FOUND
            assert missing.value.resource == ResourceInfo(
                "experiment", "experiments/nowhere", missing.value.message
            )
            with pytest.raises(InvalidArgument) as bad:
                await client.route("aio", excluded_arms=["zzz"])
            assert bad.value.field_violations[0].field == "excluded_arms[0]"
            with pytest.raises(ClientError):
                await client.delete_experiment("nowhere")

    asyncio.run(scenario())
    assert b"/bandit_router.v1.Router/Route" in recorder.methods  # grpc.aio: bytes
    assert b"/bandit_router.v1.Admin/PinArm" in recorder.methods
