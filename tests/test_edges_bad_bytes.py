"""Bad bytes and bad names at the edges: each answered with its canonical status naming the
field, and logged in at most one bounded line, over a real gRPC channel to a real server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from bandit_router.client import BanditClient
from bandit_router.errors import InvalidArgument
from bandit_router.operations.auth import hash_token, new_token
from bandit_router.operations.experiment_files import load_experiments
from bandit_router.serving.grpc_logs import GRPC_AIO_LOGGER, quiet_cancellations
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, experiment_pb2

from .servers import ServerThread

pytestmark = pytest.mark.integration

UNDECODABLE = b"\xff"
UNARY_METHODS = (
    "/bandit_router.v1.Router/Route",
    "/bandit_router.v1.Router/Reward",
    "/bandit_router.v1.Admin/CreateExperiment",
    "/bandit_router.v1.Admin/GetExperiment",
)
STREAM_METHOD = "/bandit_router.v1.Admin/ExportDecisions"


@pytest.fixture
def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ServerThread, str]]:
    """A server with auth on (router auth too): bad bytes arrive before any token check."""
    monkeypatch.delenv("BANDIT_ROUTER_TOKENS", raising=False)
    token = new_token()
    path = tmp_path / "tokens.yaml"
    entry = {"principal": "ops", "role": "operator", "sha256": hash_token(token)}
    path.write_text(yaml.safe_dump({"tokens": [entry]}))
    server = ServerThread(tokens_file=str(path), refresh_interval=0.05).start()
    yield server, token
    server.stop()


@pytest.fixture
def open_server() -> Iterator[ServerThread]:
    server = ServerThread(refresh_interval=0.05).start()
    yield server
    server.stop()


def test_undecodable_requests_are_invalid_argument_in_one_line(
    secured: tuple[ServerThread, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = secured
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(server.target) as channel:
        for method in UNARY_METHODS:
            with pytest.raises(grpc.RpcError) as raised:
                raw_unary: Any = channel.unary_unary(method)  # raw bytes, no serializer
                raw_unary(UNDECODABLE, timeout=5)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "request" in (raised.value.details() or ""), method
        with pytest.raises(grpc.RpcError) as raised:
            raw_stream: Any = channel.unary_stream(STREAM_METHOD)
            list(raw_stream(UNDECODABLE, timeout=5))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for method in (*UNARY_METHODS, STREAM_METHOD):
        name = method.lstrip("/")
        lines = [r for r in caplog.records if name in r.getMessage()]
        assert len(lines) == 1, (method, [r.getMessage() for r in lines])
        assert lines[0].exc_info is None and lines[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def export_request(since_seconds: int) -> admin_pb2.ExportDecisionsRequest:
    request = admin_pb2.ExportDecisionsRequest(experiment="shop")
    request.since.seconds = since_seconds
    return request


@pytest.mark.parametrize("since", [-1, 2**62])
def test_export_since_out_of_range_names_since(open_server: ServerThread, since: int) -> None:
    with BanditClient(open_server.target, timeout=5, max_attempts=1) as client:
        client.create_experiment("shop", ["a", "b"])
        client.route("shop")
    with grpc.insecure_channel(open_server.target) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.ExportDecisions(export_request(since), timeout=5))
    details = raised.value.details() or ""
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith("since:"), details
    assert "stream" not in details.lower()  # no store error text


@pytest.mark.parametrize(
    ("name", "arms", "field"),
    [
        ("nl\n", ["a", "b"], "experiment.name"),
        ("ok", ["a\n", "a"], "experiment.arms[0].name"),
    ],
)
def test_names_ending_in_a_newline_are_refused(
    open_server: ServerThread, name: str, arms: list[str], field: str
) -> None:
    with BanditClient(open_server.target, timeout=5, max_attempts=1) as client:
        with pytest.raises(grpc.RpcError) as raised:
            client.create_experiment(name, arms)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (raised.value.details() or "").startswith(field)
        assert client.list_experiments() == []


def test_refused_calls_log_bounded_fields(
    open_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """A 3 MB name costs the log a few hundred bytes per refusal, not 3 MB."""
    caplog.set_level(logging.INFO)
    huge = "x" * (3 * 1024 * 1024)
    megabyte = huge[: 1024 * 1024]  # three of them in one request, under the 4 MB limit
    with BanditClient(open_server.target, timeout=10, max_attempts=1) as client:
        for call in (
            lambda: client.route(huge),
            lambda: client.get_experiment(huge),
            lambda: client.create_experiment(huge, ["a"]),
            lambda: client.call_admin(
                "PinArm",
                admin_pb2.PinArmRequest(experiment=megabyte, arm=megabyte, reason=megabyte),
            ),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                call()
            assert len(raised.value.details() or "") <= 2048
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 4, [r.getMessage()[:100] for r in caplog.records]
    for record in refusals:
        size = len(record.getMessage()) + sum(
            len(str(value)) for key, value in vars(record).items() if key not in ("msg", "args")
        )
        assert size < 4096, record.getMessage()[:200]


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("exploration: {max_shares: {a: 0.1}}", "experiments[0].exploration.max_shares"),
        ("holdout: {size: 0.1}", "experiments[0].holdout.size"),
        ("sticky: {enabled: true, tll: 1h}", "experiments[0].sticky.tll"),
        ("policy: {name: thompson, param: {}}", "experiments[0].policy.param"),
        ("exploration: 0.1", "experiments[0].exploration"),
    ],
)
def test_unknown_nested_keys_are_refused_by_path(tmp_path: Path, section: str, field: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(f"experiments:\n  - name: x\n    arms: [a, b]\n    {section}\n")
    with pytest.raises(InvalidArgument) as raised:
        load_experiments(path)
    assert raised.value.field.endswith(field), raised.value.field


def test_unknown_arm_key_and_top_level_key_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("experiments:\n  - name: x\n    arms: [{name: a, prior: 3}]\n")
    with pytest.raises(InvalidArgument, match=r"arms\[0\]\.prior"):
        load_experiments(path)
    path.write_text("experiments: [{name: x, arms: [a]}]\nexperiment: {name: y}\n")
    with pytest.raises(InvalidArgument, match="experiment: unknown key"):
        load_experiments(path)


def test_grpc_cancellation_records_are_one_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    """What grpc.aio logs when a client cancels mid-write is not an error."""
    from grpc._cython.cygrpc import ExecuteBatchError  # type: ignore[import-not-found]

    quiet_cancellations()
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger(GRPC_AIO_LOGGER)
    for error in (ExecuteBatchError("Failed execute_batch"), asyncio.CancelledError()):
        try:
            raise error
        except BaseException:
            logger.exception("%s raised by servicer method [/x/Y]", type(error).__name__)
    logger.error("Unexpected [ValueError] raised by servicer method [/x/Y]")
    records = [r for r in caplog.records if r.name == GRPC_AIO_LOGGER]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.DEBUG, logging.ERROR]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records[:2])


def test_arm_state_enum_is_unaffected(open_server: ServerThread) -> None:
    """The decoding guard passes good requests through unchanged."""
    with BanditClient(open_server.target, timeout=5, max_attempts=1) as client:
        client.create_experiment("shop", ["a", "b"])
        client.call_admin(
            "SetArmState",
            admin_pb2.SetArmStateRequest(
                experiment="shop", arm="a", state=experiment_pb2.ARM_STATE_DISABLED
            ),
        )
        assert client.route("shop").arm == "b"
