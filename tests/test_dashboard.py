"""The live dashboard: the traffic-share sampler, the read-only HTTP surface, and the page in a
real browser (Debian's ``chromium``, headless) against a real server with traffic, whose DOM
must show GetReport's numbers.

Regenerate the documentation's screenshot (docs/images/dashboard.png) with
``BANDIT_ROUTER_DASHBOARD_SCREENSHOT=docs/images/dashboard.png \
.venv/bin/pytest tests/test_dashboard.py``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bandit_router.client import BanditClient
from bandit_router.dashboard.traffic import TrafficHistory
from bandit_router.operations.auth import hash_token, new_token
from bandit_router.v1 import experiment_pb2
from tests.live_traffic import LiveServer, live_server
from tests.servers import RedisServer, ServerProcess, free_port

SCREENSHOT_ENV = "BANDIT_ROUTER_DASHBOARD_SCREENSHOT"


# -- the sampler --------------------------------------------------------------------------------


def entry(counts: dict[str, float], incarnation: str = "i1") -> Any:
    """What TrafficHistory reads of a cache entry: the arm names, counts and incarnation."""
    experiment = SimpleNamespace(name="e", arm_names=tuple(counts), incarnation=incarnation)
    return SimpleNamespace(experiment=experiment, decisions=tuple(counts.values()))


def to_fixed(value: float, digits: int) -> str:
    """JavaScript's ``Number.prototype.toFixed`` (what the page shows): the exact double
    rounded half away from zero, where Python's format rounds a tie such as 0.15625 to even
    ('0.1562' against the page's '0.1563'); -0 shows as 0."""
    exact = Decimal(value + 0.0)  # -0.0 + 0.0 is 0.0
    return str(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def test_shares_are_the_differences_of_the_counters_over_the_window() -> None:
    now = [1000.0]
    history = TrafficHistory(interval=5, history=60, clock=lambda: now[0])
    for a, b in ((0, 0), (10, 30), (40, 40), (40, 40)):
        history.sample([entry({"a": a, "b": b})])
        now[0] += 5
    # Window 60 s covers every sample: (40 - 0) / 80 each.
    assert history.shares("e", 60) == {"a": 0.5, "b": 0.5}
    # Window 10 s (now = 1020): from the sample at 1010 (40, 40) to the newest: no traffic.
    assert history.shares("e", 10) == {}
    # The current cache counts extend the newest sample.
    assert history.shares("e", 10, entry({"a": 40, "b": 60})) == {"a": 0.0, "b": 1.0}
    series = history.series("e")
    assert [shares for _, shares in series] == [{"a": 0.25, "b": 0.75}, {"a": 0.75, "b": 0.25}, {}]


def test_a_recreated_experiment_or_a_reset_never_gives_negative_shares() -> None:
    history = TrafficHistory(interval=5, history=60)
    history.sample([entry({"a": 100, "b": 100})])
    history.sample([entry({"a": 3, "b": 1}, incarnation="i2")])  # deleted and created again
    history.sample([entry({"a": 6, "b": 1}, incarnation="i2")])
    assert history.shares("e", 60) == {"a": 1.0, "b": 0.0}
    history.sample([entry({"a": 0, "b": 2}, incarnation="i2")])  # statistics reset
    shares = history.shares("e", 60)
    assert all(share >= 0 for share in shares.values())
    history.sample([])
    assert history.shares("e", 60) == {}  # a removed experiment is forgotten


# -- the server and the browser -----------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("dashboard")) as server:
        yield server


def chromium(*args: str, tmp: Path) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium not found: install Debian's `chromium` package (.ci/run does)")
    done = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",  # the tests may run as root; the page is our own, on loopback
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@dataclass
class Dom(HTMLParser):
    """The dumped DOM's body attributes, and per arm row its cells: field -> (value, text)."""

    body: dict[str, str] = field(default_factory=dict)
    rows: dict[tuple[str, str], dict[str, tuple[str, str]]] = field(default_factory=dict)
    badges: list[str] = field(default_factory=list)
    _row: tuple[str, str] | None = None
    _cell: tuple[str, str] | None = None
    _text: list[str] = field(default_factory=list)
    _badge: bool = False

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        if tag == "body":
            self.body = values
        elif tag == "tr" and "data-arm" in values:
            self._row = (values["data-experiment"], values["data-arm"])
            self.rows[self._row] = {}
        elif tag == "td" and self._row is not None:
            self._cell = (values["data-field"], values.get("data-value", ""))
            self._text = []
        elif tag == "span" and "pinned" in values.get("class", "").split():
            self._badge = True
            self._text = []

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            name, value = self._cell
            self.rows[self._row][name] = (value, "".join(self._text).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "span" and self._badge and self._cell is None:
            self.badges.append("".join(self._text))
            self._badge = False


def test_the_page_in_a_real_browser_shows_getreport(live: LiveServer, tmp_path: Path) -> None:
    # A 7 s virtual-time budget: the page polls every 2 s, so it must have refreshed >= 3 times.
    html = chromium("--virtual-time-budget=7000", "--dump-dom", live.dashboard_url, tmp=tmp_path)
    dom = Dom()
    dom.feed(html)
    assert int(dom.body["data-refreshes"]) >= 3, dom.body

    reports = live.reports()
    assert {name for name, _ in dom.rows} == set(reports)
    for name, report in reports.items():
        total = sum(arm.decisions for arm in report.arms)
        assert total > 0
        for arm in report.arms:
            cells = dom.rows[(name, arm.arm)]
            assert cells["arm"][1] == arm.arm
            state = "active" if arm.state == experiment_pb2.ARM_STATE_ACTIVE else "disabled"
            assert cells["state"][0] == state
            assert cells["decisions"] == (str(arm.decisions), str(arm.decisions))
            assert float(cells["rewards"][0]) == arm.rewards
            # The exact doubles travel through JSON; the text is the rounded value.
            assert float(cells["mean"][0]) == arm.mean
            assert cells["mean"][1] == to_fixed(arm.mean, 4)
            low, high = map(float, cells["interval"][0].split())
            assert (low, high) == (arm.ci_low, arm.ci_high)
            interval = f"[{to_fixed(arm.ci_low, 4)}, {to_fixed(arm.ci_high, 4)}]"
            assert cells["interval"][1] == interval
            assert float(cells["prob_best"][0]) == arm.prob_best
            assert cells["prob_best"][1] == to_fixed(arm.prob_best, 3)
            # Every decision of this server's short life is in the 5-minute share window
            # (counted from the shared counters) and in GetReport's 1-hour log window.
            share = float(cells["recent_share"][0])
            assert math.isclose(share, arm.decisions / total, rel_tol=1e-12, abs_tol=1e-15)
            assert math.isclose(share, arm.recent_share, rel_tol=1e-12, abs_tol=1e-15)
            assert cells["drift"][0] == ("alarm" if arm.drift_detected else "ok")
    assert dom.rows[("search", "hybrid")]["state"][0] == "disabled"
    assert "pinned to dense (launch)" in dom.badges
    assert "pinned" in dom.rows[("search", "dense")]["state"][1]

    screenshot = tmp_path / "dashboard.png"
    chromium(
        "--hide-scrollbars",
        "--window-size=1200,760",
        "--virtual-time-budget=3000",
        f"--screenshot={screenshot}",
        live.dashboard_url,
        tmp=tmp_path,
    )
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1200  # IHDR width
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_ENV])


def http(method: str, url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_json_is_getreport_and_the_surface_is_read_only(live: LiveServer) -> None:
    status, headers, body = http("GET", live.dashboard_url + "api/v1/dashboard")
    assert status == 200 and headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["version"] == 1
    reports = live.reports()
    for experiment in document["experiments"]:
        report = reports[experiment["name"]]
        assert [a["arm"] for a in experiment["arms"]] == [a.arm for a in report.arms]
        for arm, expected in zip(experiment["arms"], report.arms, strict=True):
            assert (arm["decisions"], arm["mean"], arm["prob_best"]) == (
                expected.decisions,
                expected.mean,
                expected.prob_best,
            )
    search = next(e for e in document["experiments"] if e["name"] == "search")
    assert search["pin"]["arm"] == "dense" and search["pin"]["reason"] == "launch"

    status, headers, _ = http("GET", live.dashboard_url)
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "http" not in http("GET", live.dashboard_url + "dashboard.js")[2].decode().replace(
        "http://www.w3.org/2000/svg", ""
    )  # nothing fetched from elsewhere
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = http(method, live.dashboard_url + "api/v1/dashboard")
        assert status == 405 and headers["Allow"] == "GET, HEAD", method
    assert http("GET", live.dashboard_url + "metrics")[0] == 404
    # Without tokens on the server there is no one to audit: every action is refused.
    assert document["actions"] is False
    pin = {"action": "pin", "experiment": "checkout", "arm": "blue", "reason": "x"}
    status, _, body = post_action(live.dashboard_url, pin, token="anything")
    assert status == 403 and "read-only" in json.loads(body)["error"]
    assert live.reports()["checkout"].arms  # nothing changed: checkout has no pin
    with BanditClient(live.target) as client:
        assert not client.get_experiment("checkout").experiment.pin.arm


def post_action(
    base: str, action: dict[str, Any], token: str | None, kind: str = "application/json"
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": kind}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        base + "api/v1/actions", data=json.dumps(action).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_operator_actions_need_an_operator_token_and_are_audited(tmp_path: Path) -> None:
    """With tokens, the page offers actions and each is the Admin operation, audited under the
    token's principal; no token, a router token or a bad request change nothing."""
    operator, router = new_token(), new_token()
    env = {
        "BANDIT_ROUTER_TOKENS": f"ops-carol:operator:{hash_token(operator)},"
        f"svc-web:router:{hash_token(router)}"
    }
    redis = RedisServer(appendonly=False).start()
    dashboard_port = free_port()
    server = ServerProcess(
        "--redis-url", redis.url, "--dashboard-address", f"127.0.0.1:{dashboard_port}", env=env
    )
    base = f"http://127.0.0.1:{dashboard_port}/"
    try:
        server.start()
        with BanditClient(server.target, token=operator) as client:
            client.create_experiment("checkout", ["blue", "green"])
        wait_for_dashboard(base)
        assert json.loads(http("GET", base + "api/v1/dashboard")[2])["actions"] is True
        pin = {"action": "pin", "experiment": "checkout", "arm": "green", "reason": "launch"}
        refusals = [
            (post_action(base, pin, None), 401),
            (post_action(base, pin, "not-a-token"), 401),
            (post_action(base, pin, router), 403),
            (post_action(base, {**pin, "action": "drop"}, operator), 400),
            (post_action(base, {**pin, "arm": "red"}, operator), 404),
            (post_action(base, {**pin, "arm": 3}, operator), 400),
            (post_action(base, pin, operator, kind="text/plain"), 415),
        ]
        for (status, _, body), expected in refusals:
            assert status == expected, body
        assert json.loads(refusals[3][0][2])["field"] == "action"
        with BanditClient(server.target, token=operator) as client:
            assert not client.get_experiment("checkout").experiment.pin.arm  # nothing applied
            status, _, body = post_action(base, pin, operator)
            assert status == 200, body
            assert client.get_experiment("checkout").experiment.pin.arm == "green"
            status, _, body = post_action(
                base, {"action": "disable", "experiment": "checkout", "arm": "blue"}, operator
            )
            assert status == 200, body
            current = client.get_experiment("checkout").experiment
            assert [arm.state for arm in current.arms] == [
                experiment_pb2.ARM_STATE_DISABLED,
                experiment_pb2.ARM_STATE_ACTIVE,
            ]
            entries = client.list_audit("checkout")
        actions = {(entry.action, entry.principal) for entry in entries}
        assert {("pin", "ops-carol"), ("disable_arm", "ops-carol")} <= actions
        assert not any(entry.principal == "svc-web" for entry in entries)

        # The page offers the token form; without a token in the tab it shows no buttons.
        html = chromium("--virtual-time-budget=3000", "--dump-dom", base, tmp=tmp_path)
        assert '<form id="operator">' in html  # not hidden: this server has tokens
        assert 'data-actions="off"' in html and 'class="action"' not in html
    except BaseException:
        print(server.output()[-3000:])
        raise
    finally:
        server.stop()
        redis.stop()


def wait_for_dashboard(base: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while http("GET", base + "api/v1/dashboard")[0] != 200:
        assert time.monotonic() < deadline, "the dashboard never answered"
        time.sleep(0.1)
