"""Pagination of the List* calls (AIP-158): page sizes, cursor tokens that survive changes
between pages, refused tokens naming page_token, and a client and CLI that follow the pages.
Against a real server over loopback gRPC (the audit cursor on both stores: it is a Redis
stream range)."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest

from bandit_router.cli import main as cli_main
from bandit_router.client import BanditClient, ClientError, ErrorReason
from bandit_router.operations.paging import MAX_PAGE_SIZE, page_size
from bandit_router.v1 import admin_pb2

from .servers import ServerThread

pytestmark = pytest.mark.integration


def pages(client: BanditClient, method: str, request: Any, items: str) -> list[list[Any]]:
    """Every page of a listing, by hand: what a client in another language does."""
    found = []
    while True:
        response = client.call_admin(method, request)
        found.append(list(getattr(response, items)))
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


def test_page_sizes() -> None:
    assert (page_size(0), page_size(7), page_size(10**6)) == (100, 7, MAX_PAGE_SIZE)


def test_experiment_pages_follow_name_order_across_changes(client: BanditClient) -> None:
    names = [f"e{i}" for i in range(7)]
    for name in reversed(names):
        client.create_experiment(name, ["a", "b"])
    request = admin_pb2.ListExperimentsRequest(page_size=3)
    first = client.call_admin("ListExperiments", request)
    assert [e.name for e in first.experiments] == names[:3]
    # Changes between pages: the cursor is the last name, so nothing is skipped or repeated.
    client.delete_experiment("e1")
    client.create_experiment("e00", ["a"])  # sorts before the cursor: not in later pages
    request.page_token = first.next_page_token
    rest = pages(client, "ListExperiments", request, "experiments")
    assert [[e.name for e in page] for page in rest] == [names[3:6], names[6:]]
    assert [e.name for e in client.list_experiments(page_size=2)] == sorted(
        ["e00", *(n for n in names if n != "e1")]
    )


def test_audit_and_snapshot_pages(any_server: ServerThread) -> None:
    with BanditClient(any_server.target, timeout=5) as client:
        client.create_experiment("log", ["a", "b"])
        for i in range(4):
            client.pin_arm("log", "a", reason=f"pin {i}")
            client.reset("log", reason=f"reset {i}")
        everything = client.list_audit("log", limit=None)
        assert len(everything) == 9 and everything[-1].action == "create"
        by_page = pages(
            client,
            "ListAudit",
            admin_pb2.ListAuditRequest(experiment="log", page_size=4),
            "entries",
        )
        assert [len(page) for page in by_page] == [4, 4, 1]
        assert [e.id for page in by_page for e in page] == [e.id for e in everything]
        # The deprecated limit still sizes the first page; page_size wins over it.
        legacy = client.call_admin(
            "ListAudit", admin_pb2.ListAuditRequest(experiment="log", limit=3)
        )
        assert [e.id for e in legacy.entries] == [e.id for e in everything[:3]]
        assert [e.id for e in client.list_audit("log", limit=5)] == [e.id for e in everything[:5]]

        snapshots = pages(
            client,
            "ListSnapshots",
            admin_pb2.ListSnapshotsRequest(experiment="log", page_size=3),
            "snapshots",
        )
        assert [[s.reason for s in page] for page in snapshots] == [
            ["reset 3", "reset 2", "reset 1"],
            ["reset 0"],
        ]


def token(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def test_bad_page_tokens_are_invalid_argument_naming_page_token(client: BanditClient) -> None:
    for name in ("x", "y"):
        client.create_experiment(name, ["a"])
        for i in range(2):
            client.pin_arm(name, "a", reason=str(i))
    audit_x = client.call_admin(
        "ListAudit", admin_pb2.ListAuditRequest(experiment="x", page_size=1)
    ).next_page_token
    assert audit_x
    bad: list[tuple[str, Any]] = [
        ("ListExperiments", admin_pb2.ListExperimentsRequest(page_token="not a token!")),
        ("ListExperiments", admin_pb2.ListExperimentsRequest(page_token=token([1, 2]))),
        ("ListExperiments", admin_pb2.ListExperimentsRequest(page_token="A" * 2000)),
        ("ListExperiments", admin_pb2.ListExperimentsRequest(page_token=audit_x)),
        ("ListAudit", admin_pb2.ListAuditRequest(experiment="y", page_token=audit_x)),
        (
            "ListAudit",  # well formed, but not a stream id: refused before Redis sees it
            admin_pb2.ListAuditRequest(
                experiment="x", page_token=token({"c": "ListAudit", "e": "x", "a": "1-2-3"})
            ),
        ),
        ("ListSnapshots", admin_pb2.ListSnapshotsRequest(experiment="x", page_token=audit_x)),
    ]
    for method, request in bad:
        with pytest.raises(ClientError) as raised:
            client.call_admin(method, request)
        error = raised.value
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, error)
        assert (error.field, error.reason) == ("page_token", ErrorReason.INVALID_PAGE_TOKEN)
    with pytest.raises(ClientError) as negative:
        client.call_admin("ListExperiments", admin_pb2.ListExperimentsRequest(page_size=-1))
    assert (negative.value.field, negative.value.reason) == ("page_size", ErrorReason.INVALID_FIELD)


def test_cli_follows_the_pages(
    embedded_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """More experiments than the default page (100): `get experiments` shows them all."""
    with BanditClient(embedded_server.target, timeout=5) as client:
        for i in range(101):
            client.create_experiment(f"p{i:03d}", ["a"])
    capsys.readouterr()
    assert cli_main(["get", "experiments", "--target", embedded_server.target, "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    # The experiment-file format: {"experiments": [...]}.
    assert [e["name"] for e in shown["experiments"]] == [f"p{i:03d}" for i in range(101)]
