"""Deploy artefacts: promtool accepts and unit-tests the rules, every PromQL expression in the
dashboard and the rules names only metrics that ``Metrics`` registers (or recording rules), and
every one of them returns data from a real Prometheus scraping a real server with traffic."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bandit_router.telemetry.metrics import Metrics
from tests.live_traffic import Traffic, live_server
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[1]
PROM_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "bandit-router.json"
RUNBOOKS = REPO / "docs" / "runbooks.md"
RENDER = PROM_DIR / "render_alerts.py"

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package "
            "(apt-get install prometheus), which provides /usr/bin/promtool"
        )
    return path


def run_promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rules() -> None:
    done = run_promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    # alerts_test.yml: a 2% error rate pages (critical), 0.05% does not; same for latency.
    done = run_promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_scrape_config() -> None:
    done = run_promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_tests_can_fail(tmp_path: Path) -> None:
    """The promtool tests are not vacuous: at 1% errors (< 14.4 x 0.1%) the page must not fire."""
    shutil.copy(PROM_DIR / "alerts.yml", tmp_path / "alerts.yml")
    text = (PROM_DIR / "alerts_test.yml").read_text()
    text = text.replace("'0+98x120'", "'0+99x120'", 1).replace("'0+2x120'", "'0+1x120'", 1)
    (tmp_path / "alerts_test.yml").write_text(text)
    done = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode != 0


def test_healthy_case_test_can_fail(tmp_path: Path) -> None:
    """Without the vector(0) fallback the fault ratio is empty on a healthy fleet, and the
    promtool suite says so (its healthy-fleet case expects 0 for every window)."""
    text = (PROM_DIR / "alerts.yml").read_text()
    assert text.count("or vector(0)") == 7
    stripped = "\n".join(line for line in text.splitlines() if "or vector(0)" not in line)
    (tmp_path / "alerts.yml").write_text(stripped + "\n")
    shutil.copy(PROM_DIR / "alerts_test.yml", tmp_path / "alerts_test.yml")
    assert run_promtool("check", "rules", "alerts.yml", cwd=tmp_path).returncode == 0
    done = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "ratio_rate5m" in done.stdout + done.stderr


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def github_anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_every_alert_links_an_absolute_runbook_that_exists() -> None:
    """Every runbook link is the Runbooks page plus an anchor that page has (GitHub's and
    MkDocs's slugs agree for these headings)."""
    anchors = github_anchors(RUNBOOKS.read_text())
    bases = set()
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert re.fullmatch(r"https://[^/\s]+/\S*", base), (rule["alert"], url)
        assert anchor in anchors, (rule["alert"], anchor)
        bases.add(base)
    assert len(bases) == 1, bases  # one base, so render_alerts.py can move them all
    assert next(iter(bases)).endswith("/docs/runbooks.md"), bases


def test_down_absent_and_drift_alerts() -> None:
    by_name = {r["alert"]: r for r in alert_rules()}
    assert "up{" in by_name["BanditRouterTargetDown"]["expr"]
    assert "== 0" in by_name["BanditRouterTargetDown"]["expr"]
    assert by_name["BanditRouterNoTargetUp"]["expr"].startswith("absent(up{")
    assert by_name["BanditRouterNoTargetUp"]["labels"]["severity"] == "critical"
    assert by_name["BanditRouterDriftDetected"]["for"] == "15m"


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RENDER), *args], capture_output=True, text=True, timeout=60
    )


def test_render_alerts_moves_every_runbook_link(tmp_path: Path) -> None:
    base = "https://wiki.example.org/ops/bandit-router"
    done = render("--runbook-base", base)
    assert done.returncode == 0, done.stderr
    rendered = yaml.safe_load(done.stdout)
    urls = [
        r["annotations"]["runbook_url"]
        for g in rendered["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert len(urls) == len(alert_rules())
    assert all(u.startswith(base + "#runbook-") for u in urls), urls
    # Only the links changed: the rendered file still passes promtool and its unit tests once
    # the expected annotations name the same base.
    original = (PROM_DIR / "alerts.yml").read_text()
    old_base = next(iter({r["annotations"]["runbook_url"].split("#")[0] for r in alert_rules()}))
    assert done.stdout == original.replace(old_base + "#", base + "#")
    (tmp_path / "alerts.yml").write_text(done.stdout)
    tests = (PROM_DIR / "alerts_test.yml").read_text().replace(old_base + "#", base + "#")
    (tmp_path / "alerts_test.yml").write_text(tests)
    assert run_promtool("check", "rules", "alerts.yml", cwd=tmp_path).returncode == 0
    done = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "base", ["README.md", "/runbooks", "ftp://host/x", "https://host/x#frag", 'https://h/"x']
)
def test_render_alerts_rejects_a_base_that_is_not_an_absolute_link(base: str) -> None:
    done = render("--runbook-base", base)
    assert done.returncode == 2
    assert "--runbook-base" in done.stderr
    assert done.stdout == ""


def registered_series_names() -> set[str]:
    """Every sample name the Metrics class exposes (with _bucket/_sum/_count/_total)."""
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.observe_rpc("s", "Route", "OK", 0.001)
    m.observe_decision("e", "a", "EXPLOIT")
    m.observe_reward("e", "a", "APPLIED", 1.0)
    m.observe_default_rewards("e", "a", 1, 0.0)
    m.set_arm_posterior("e", "a", 0.5, 0.5)
    m.set_exploration_share("e", 0.1)
    m.set_cache_age("e", 1.0)
    m.observe_store("op", 0.001, False)
    m.set_drift("e", "a", 1.0, True)
    m.set_committed("e", True)
    m.set_arm_quarantined("e", "a", True)
    m.set_arm_metric("e", "a", "quality", 1.0, 0.5)
    m.count_guardrail_transition("e", "a", "quarantined")
    names: set[str] = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        names.update(sample.name for sample in family.samples)
    return names


def recording_rules() -> set[str]:
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names in by/without/on/ignoring clauses, or anything inside {...}, [...] or quotes."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        word = match.group(0)
        if following.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every panel query, and the series selector of every ``label_values`` variable."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            inner = re.fullmatch(r"label_values\((\w+(?:\{[^}]*\})?),\s*\w+\)", query)
            assert inner, query
            exprs.append(inner.group(1))
    return exprs


def grafana_substituted(expr: str, experiment: str = ".*", job: str = ".*") -> str:
    """A dashboard expression as Grafana sends it, with all values of every variable."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$experiment", experiment)
        .replace("$job", job)
        .replace("$instance", ".*")
    )


def test_metric_name_parser() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{method="Route",le="0.5"}[5m])))'
        " / on(job) group_left(arm) y:z:ratio_rate5m or vector(1)"
    )
    assert metric_names(expr) == {"x_bucket", "y:z:ratio_rate5m"}


def test_dashboard_structure_and_metric_names() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["experiment"]["type"] == "query"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["includeAll"] and variables[name]["multi"], name
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]

    # `up` is the series Prometheus itself writes for every scrape target.
    known = registered_series_names() | recording_rules() | {"up"}
    exprs = dashboard_expressions(dashboard)
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f"unknown metrics {names - known} in {expr!r}"
        used |= names
    # Every series selector of every panel is narrowed to the chosen jobs and instances.
    for panel in panels:
        for target in panel["targets"]:
            selectors = re.findall(r"[a-z_:]+\{[^}]*\}", target["expr"])
            assert selectors, target["expr"]
            for selector in selectors:
                assert 'job=~"$job",instance=~"$instance"' in selector, (panel["title"], selector)
    # The dashboard covers what the brief asks for.
    for required in (
        "bandit_router_decisions_total",
        "bandit_router_reward_value_total",
        "bandit_router_arm_probability_best_ratio",
        "bandit_router_exploration_ratio",
        "grpc_server_handling_seconds_bucket",
        "grpc_server_handled_total",
        "bandit_router_cache_age_seconds",
        "bandit_router_drift_statistic",
        "bandit_router_arm_metric_mean",
        "bandit_router_arm_quarantined",
    ):
        assert required in used, required

    latency = next(p for p in panels if p["title"].startswith("Route latency vs SLO"))
    steps = latency["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert 0.5 in [s["value"] for s in steps]  # the 500 ms SLO line
    assert any("histogram_quantile(0.99" in t["expr"] for t in latency["targets"])


def test_rule_expressions_use_registered_metrics() -> None:
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    # `up` is the series Prometheus itself writes for every scrape target.
    known = registered_series_names() | recording_rules() | {"up"}
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = metric_names(rule["expr"])
            assert names <= known, (
                f"unknown metrics {names - known} in {rule.get('record') or rule.get('alert')}"
            )
    registered = registered_series_names()
    # The latency SLO needs an le="0.5" bucket and the error ratio needs the handled counter.
    assert "grpc_server_handling_seconds_bucket" in registered
    assert "grpc_server_handled_total" in registered


def test_dashboard_promql_is_valid(tmp_path: Path) -> None:
    """promtool parses every dashboard expression (Grafana variables substituted)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    substituted = [grafana_substituted(e) for e in exprs]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(substituted)
                ],
            }
        ]
    }
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    done = run_promtool("check", "rules", "dashboard_rules.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# -- every expression against a real Prometheus scraping a real server with traffic -----------


def alert_condition(expr: str) -> str:
    """An alert's expression as a condition that has data whether or not the alert fires:
    each comparison with a number becomes ``bool`` (0 or 1 instead of filtering), and
    ``absent(X)`` is checked through X (absent is empty exactly when X has data)."""
    inner = re.fullmatch(r"\s*absent\((.*)\)\s*", expr, re.DOTALL)
    if inner:
        expr = inner.group(1)
    return re.sub(r"(==|!=|>=|<=|>|<)\s*(?=[\d(])", r"\1 bool ", expr)


def test_alert_condition() -> None:
    assert alert_condition('absent(up{job=~"b.*"} == 1)') == 'up{job=~"b.*"} == bool 1'
    assert (
        alert_condition('x{code!="OK"} > (14.4 * 0.001)') == 'x{code!="OK"} > bool (14.4 * 0.001)'
    )


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus not found: install Debian's `prometheus` package (.ci/run does)")
    return path


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def test_every_expression_returns_data_from_a_real_prometheus(tmp_path: Path) -> None:
    """Prometheus (scrape and rule evaluation every second) scrapes a real server under
    traffic; every dashboard query (variables set to this job and instance), every recording
    rule and every alert condition returns at least one series."""
    binary = prometheus_binary()
    with live_server(tmp_path, rounds=40, metered=True) as live, Traffic(live.target):
        instance = f"127.0.0.1:{live.metrics_port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROM_DIR / "alerts.yml")],
            "scrape_configs": [
                {"job_name": "bandit-router", "static_configs": [{"targets": [instance]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (tmp_path / "prometheus.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            exprs: list[tuple[str, str]] = []
            dashboard = json.loads(DASHBOARD.read_text())
            for e in dashboard_expressions(dashboard):
                exprs.append(("dashboard", grafana_substituted(e, job="bandit-router")))
            rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
            for group in rules["groups"]:
                for rule in group["rules"]:
                    if "record" in rule:
                        exprs.append((rule["record"], rule["expr"]))
                    else:
                        exprs.append((rule["alert"], alert_condition(rule["expr"])))
            # Until every expression has data: rates need two scrapes with traffic between
            # them, the alerts need the recording rules evaluated, default rewards need the
            # sweeper. Bounded; a missing series fails with its name.
            deadline = time.monotonic() + 40
            missing = exprs
            while missing and time.monotonic() < deadline:
                time.sleep(1)
                with contextlib.suppress(OSError):
                    missing = [(name, e) for name, e in missing if not query(base, e)]
            assert not missing, "no data for:\n" + "\n".join(f"{n}: {e}" for n, e in missing)
        finally:
            proc.terminate()
            proc.wait(20)
