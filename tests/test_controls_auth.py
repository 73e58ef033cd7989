"""Authentication and transport security over real channels to real servers.

The auth matrix: every kind of bad credential is UNAUTHENTICATED, a valid token of the wrong
role is PERMISSION_DENIED, the right role passes, and the audit log names the token's
principal. Tokens are configured hashed, from a file or from ``BANDIT_ROUTER_TOKENS``.
TLS and mutual TLS use a throwaway CA made with ``openssl`` for 127.0.0.1.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bandit_router.cli import main as cli_main
from bandit_router.client import BanditClient, ClientError, ErrorReason
from bandit_router.operations.auth import hash_token, new_token
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, router_pb2, router_pb2_grpc

from .servers import ServerProcess, ServerThread
from .test_controls_helpers import create, stop_process, stop_thread

pytestmark = pytest.mark.integration

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
OK = grpc.StatusCode.OK


class Tokens:
    """Fresh tokens of every kind, and the hashed tokens file a server reads."""

    def __init__(self, directory: Path) -> None:
        self.router = new_token()
        self.operator = new_token()
        self.expired = new_token()
        entries = [
            {"principal": "svc-checkout", "role": "router", "sha256": hash_token(self.router)},
            {"principal": "ops-alice", "role": "operator", "sha256": hash_token(self.operator)},
            {
                "principal": "ops-former",
                "role": "operator",
                "sha256": hash_token(self.expired),
                "expires_at": time.time() - 60,
            },
        ]
        self.path = directory / "tokens.yaml"
        self.path.write_text(yaml.safe_dump({"tokens": entries}))
        assert self.router not in self.path.read_text()  # only hashes are stored


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    return Tokens(tmp_path)


@pytest.fixture
def secured(
    redis_url: str, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerThread]:
    monkeypatch.delenv("BANDIT_ROUTER_TOKENS", raising=False)
    server = ServerThread(
        redis_url=redis_url, refresh_interval=0.05, tokens_file=str(tokens.path)
    ).start()
    with BanditClient(server.target, token=tokens.operator, timeout=5) as client:
        create(client, "guarded", ["a", "b"])
    yield server
    stop_thread(server)


def status_of(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        assert "Traceback" not in (error.details() or "")
        return code
    return OK


def test_auth_matrix(secured: ServerThread, tokens: Tokens) -> None:
    with BanditClient(secured.target, token=tokens.operator, timeout=5) as operator:
        decision_id = operator.route("guarded").decision_id
    channel = grpc.insecure_channel(secured.target)
    router = router_pb2_grpc.RouterStub(channel)
    admin = admin_pb2_grpc.AdminStub(channel)
    calls: dict[str, Callable[[Any], Any]] = {
        "Route": lambda md: router.Route(
            router_pb2.RouteRequest(experiment="guarded"), metadata=md, timeout=5
        ),
        "Reward": lambda md: router.Reward(
            router_pb2.RewardRequest(decision_id=decision_id, value=1.0), metadata=md, timeout=5
        ),
        "ListExperiments": lambda md: admin.ListExperiments(
            admin_pb2.ListExperimentsRequest(), metadata=md, timeout=5
        ),
        "PinArm": lambda md: admin.PinArm(
            admin_pb2.PinArmRequest(experiment="guarded", arm="a", reason="matrix"),
            metadata=md,
            timeout=5,
        ),
    }
    headers: dict[str, str | None] = {
        "no token": None,
        "basic scheme": "Basic x",
        "bearer without token": "Bearer",
        "bearer with blanks": "Bearer   ",
        "unknown token": f"Bearer {new_token()}",
        "expired token": f"Bearer {tokens.expired}",
        "router token": f"Bearer {tokens.router}",
        "operator token": f"Bearer {tokens.operator}",
    }
    expected = {
        "router token": {
            "Route": OK,
            "Reward": OK,
            "ListExperiments": PERMISSION_DENIED,
            "PinArm": PERMISSION_DENIED,
        },
        "operator token": dict.fromkeys(calls, OK),
    }
    seen = {}
    for case, header in headers.items():
        metadata = None if header is None else (("authorization", header),)
        for method, call in calls.items():
            seen[case, method] = status_of(functools.partial(call, metadata))
    want = {
        (case, method): expected.get(case, {}).get(method, UNAUTHENTICATED)
        for case in headers
        for method in calls
    }
    assert seen == want
    channel.close()

    with BanditClient(secured.target, token=tokens.operator, timeout=5) as operator:
        entries = operator.call_admin(
            "ListAudit", admin_pb2.ListAuditRequest(experiment="guarded")
        ).entries
    # Only the operator's PinArm got through; refused calls change nothing and audit nothing.
    assert [(e.action, e.principal, e.reason) for e in entries] == [
        ("pin", "ops-alice", "matrix"),
        ("create", "ops-alice", "test setup"),
    ]


def test_error_messages_say_what_is_wrong(secured: ServerThread, tokens: Tokens) -> None:
    def refusal(token: str | None) -> tuple[str, ErrorReason | str | None]:
        with (
            BanditClient(secured.target, token=token, timeout=5, max_attempts=1) as client,
            pytest.raises(ClientError) as raised,
        ):
            client.call_admin("ListExperiments", admin_pb2.ListExperimentsRequest())
        assert raised.value.field == "authorization"
        return str(raised.value.details()), raised.value.reason

    missing, expired, unknown, role = (
        refusal(token) for token in (None, tokens.expired, "not-a-token", tokens.router)
    )
    assert "missing" in missing[0] and missing[1] is ErrorReason.TOKEN_MISSING
    assert "expired" in expired[0] and expired[1] is ErrorReason.TOKEN_EXPIRED
    assert "unknown token" in unknown[0] and unknown[1] is ErrorReason.TOKEN_INVALID
    assert "'svc-checkout'" in role[0] and "operator" in role[0]
    assert role[1] is ErrorReason.ROLE_NOT_GRANTED


def test_env_tokens_and_no_router_auth(redis_url: str) -> None:
    """``BANDIT_ROUTER_TOKENS`` configures tokens; ``--no-router-auth`` opens Route/Reward only."""
    token = new_token()
    env = {"BANDIT_ROUTER_TOKENS": f"ops-bob:operator:{hash_token(token)}"}
    server = ServerProcess("--redis-url", redis_url, "--no-router-auth", env=env).start()
    try:
        with BanditClient(server.target, token=token, timeout=5) as operator:
            create(operator, "open-route", ["a", "b"])
            operator.call_admin(
                "PinArm", admin_pb2.PinArmRequest(experiment="open-route", arm="b", reason="env")
            )
            entries = operator.call_admin(
                "ListAudit", admin_pb2.ListAuditRequest(experiment="open-route")
            ).entries
            assert {e.principal for e in entries} == {"ops-bob"}
        with BanditClient(server.target, timeout=5, max_attempts=1) as anonymous:
            time.sleep(0.2)
            decision = anonymous.route("open-route")
            assert anonymous.reward(decision.decision_id, 1.0) == "APPLIED"
            assert status_of(anonymous.list_experiments) == UNAUTHENTICATED
    finally:
        stop_process(server)


def test_an_empty_tokens_file_fails_closed(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tokens file without tokens (a botched deploy) must not turn auth off."""
    monkeypatch.delenv("BANDIT_ROUTER_TOKENS", raising=False)
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens: []\n")
    server = ServerThread(redis_url=redis_url, tokens_file=str(path)).start()
    try:
        with BanditClient(server.target, timeout=5, max_attempts=1) as client:
            assert status_of(client.list_experiments) == UNAUTHENTICATED
            assert status_of(lambda: client.route("anything")) == UNAUTHENTICATED
    finally:
        stop_thread(server)


def test_token_create_output_is_a_working_tokens_file(
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BANDIT_ROUTER_TOKENS", raising=False)
    assert cli_main(["token", "create", "--principal", "ops-dana", "--role", "operator"]) == 0
    captured = capsys.readouterr()
    token = captured.err.rsplit(" ", 1)[1].strip()
    assert token not in captured.out
    path = tmp_path / "tokens.yaml"
    path.write_text(captured.out)
    server = ServerThread(redis_url=redis_url, tokens_file=str(path)).start()
    try:
        with BanditClient(server.target, token=token, timeout=5) as client:
            create(client, "minted", ["a", "b"])
            entry = client.call_admin(
                "ListAudit", admin_pb2.ListAuditRequest(experiment="minted")
            ).entries[0]
            assert entry.principal == "ops-dana"
    finally:
        stop_thread(server)


# -- TLS ---------------------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for IP 127.0.0.1 and a client certificate, all throwaway."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.pem", cwd=d,
    )  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=d,
        )  # fmt: skip
    return d


def credentials(pki: Path, *, client_cert: bool) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(),
        (pki / "client.key").read_bytes() if client_cert else None,
        (pki / "client.pem").read_bytes() if client_cert else None,
    )


def start_tls(server: ServerProcess, creds: grpc.ChannelCredentials) -> ServerProcess:
    """Start and wait for SERVING over TLS (tests.servers.wait_serving speaks plaintext)."""
    server.start(wait=False)
    deadline = time.monotonic() + 20
    with grpc.secure_channel(server.target, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert server.proc is not None and server.proc.poll() is None, server.output()
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return server
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(server.output())


def test_tls(redis_url: str, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = ServerProcess(
        "--redis-url", redis_url,
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
    )  # fmt: skip
    start_tls(server, credentials(pki, client_cert=False))
    try:
        with BanditClient(
            server.target, timeout=5, credentials=credentials(pki, client_cert=False)
        ) as client:
            create(client, "tls", ["a", "b"])
            assert client.route("tls").arm in {"a", "b"}
        with BanditClient(server.target, timeout=2, max_attempts=1) as plaintext:
            assert status_of(lambda: plaintext.route("tls")) == grpc.StatusCode.UNAVAILABLE
        # The CLI speaks TLS with --tls-ca.
        code = cli_main(
            ["pin", "tls", "b", "--target", server.target, "--tls-ca", str(pki / "ca.pem")]
        )
        assert code == 0
        assert "tls" in capsys.readouterr().out
    finally:
        stop_process(server)


def test_mutual_tls(redis_url: str, pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = ServerProcess(
        "--redis-url", redis_url,
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
        "--tls-client-ca", str(pki / "ca.pem"),
    )  # fmt: skip
    start_tls(server, credentials(pki, client_cert=True))
    try:
        with BanditClient(
            server.target, timeout=5, credentials=credentials(pki, client_cert=True)
        ) as client:
            create(client, "mtls", ["a", "b"])
            assert client.route("mtls").arm in {"a", "b"}
        with BanditClient(
            server.target,
            timeout=2,
            max_attempts=1,
            credentials=credentials(pki, client_cert=False),
        ) as no_cert:
            assert status_of(lambda: no_cert.route("mtls")) == grpc.StatusCode.UNAVAILABLE
        tls_flags = ["--tls-ca", str(pki / "ca.pem")]
        cert_flags = ["--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]
        target = ["--target", server.target, "--timeout", "3"]
        assert cli_main(["pin", "mtls", "b", *target, *tls_flags, *cert_flags]) == 0
        assert cli_main(["unpin", "mtls", *target, *tls_flags]) == 1  # no client certificate
        assert "UNAVAILABLE" in capsys.readouterr().err
    finally:
        stop_process(server)
