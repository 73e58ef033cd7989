"""deploy/compose.yaml: every file it mounts exists, its services agree with the image and
with each other, and the Prometheus configuration it mounts passes ``promtool check config``
as the container sees it.

No container engine runs here, so the containers' view is rebuilt instead: the Prometheus
service's bind mounts are copied to the paths they take inside the container (under a
temporary root), and promtool checks the configuration there, rule files included. A rule
file the configuration names but compose does not mount fails this check.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bandit_router.operations.experiment_files import load_experiments

from .deploy_support import REPO, image_env, port_of, server_config

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ROUTERS = ["bandit-router-1", "bandit-router-2"]

Service = dict[str, Any]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # resolves the << merge
    return data


def service(name: str) -> Service:
    found: Service = compose()["services"][name]
    return found


def bind_mounts(svc: Service) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount; named volumes are left out."""
    mounts = []
    for volume in svc.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((DEPLOY / source).resolve(), target))
    return mounts


def seconds(duration: str) -> float:
    assert duration.endswith("s") and duration[:-1].isdigit(), duration
    return float(duration[:-1])


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package "
            "(apt-get install prometheus), which provides /usr/bin/promtool"
        )
    return path


def container_root(svc: Service, root: Path) -> None:
    """The service's bind mounts copied to where the container sees them, under ``root``."""
    for source, target in bind_mounts(svc):
        destination = root / target.lstrip("/")
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, destination)


def config_file(svc: Service) -> str:
    (flag,) = [arg for arg in svc["command"] if arg.startswith("--config.file=")]
    return str(flag.partition("=")[2])


def test_services_and_mounted_files_exist() -> None:
    data = compose()
    assert set(data["services"]) == {"redis", *ROUTERS, "prometheus", "grafana"}
    declared = set(data.get("volumes", {}))
    for name, svc in data["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in declared, (name, source)
        for port in svc.get("ports", []):
            host_ip = port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name}: publish on the loopback only"
        for dependency in svc.get("depends_on", []):
            assert dependency in data["services"], (name, dependency)
    for router in ROUTERS:
        build = service(router)["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"


def test_redis_keeps_an_append_only_file_fsynced_on_every_write() -> None:
    command = service("redis")["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in service("redis")["volumes"])


@pytest.mark.parametrize("router", ROUTERS)
def test_router_configuration(router: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each replica's environment, over the image's own ENV, is a valid ``serve``
    configuration: Redis is the compose service, the experiments file is the mounted one and
    loads, the published port is the one it listens on, and compose waits out the drain."""
    svc = service(router)
    env = {**image_env(), **svc["environment"]}
    env.pop("PATH")
    config = server_config(env, [], monkeypatch)
    assert config.redis_url is not None
    assert urlsplit(config.redis_url).hostname == "redis"
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    (published,) = svc["ports"]
    assert int(published.rsplit(":", 1)[1]) == port_of(config.listen)
    mounts = {target: source for source, target in bind_mounts(svc)}
    assert config.experiments_file in mounts
    assert [e.name for e in load_experiments(mounts[config.experiments_file])] == ["homepage"]
    assert seconds(svc["stop_grace_period"]) > config.drain_delay + config.grace
    assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]


def test_prometheus_config_passes_promtool_as_mounted(tmp_path: Path) -> None:
    svc = service("prometheus")
    container_root(svc, tmp_path)
    config = tmp_path / config_file(svc).lstrip("/")
    done = subprocess.run(
        [promtool(), "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "rule files found" in done.stdout, done.stdout
    # It scrapes both replicas on the image's metrics port, under the job name the rules read.
    scrape = yaml.safe_load(config.read_text())
    (job,) = scrape["scrape_configs"]
    assert job["job_name"].startswith("bandit-router")  # alerts.yml: job=~"bandit-router.*"
    metrics_port = port_of(image_env()["BANDIT_ROUTER_METRICS_ADDRESS"])
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert sorted(targets) == [f"{router}:{metrics_port}" for router in ROUTERS]


def test_promtool_check_fails_without_the_mounted_rules(tmp_path: Path) -> None:
    """The layout matters: drop the rules mount and the same check fails."""
    svc = dict(service("prometheus"))
    svc["volumes"] = [v for v in svc["volumes"] if "alerts.yml" not in v]
    container_root(svc, tmp_path)
    config = tmp_path / config_file(svc).lstrip("/")
    done = subprocess.run(
        [promtool(), "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "alerts.yml" in done.stdout + done.stderr


def test_grafana_provisions_the_datasource_and_the_dashboard(tmp_path: Path) -> None:
    svc = service("grafana")
    container_root(svc, tmp_path)
    provisioning = tmp_path / "etc/grafana/provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    url = urlsplit(datasource["url"])
    prometheus_port = int(service("prometheus")["ports"][0].rsplit(":", 1)[1])
    assert (url.hostname, url.port) == ("prometheus", prometheus_port)
    (provider,) = yaml.safe_load((provisioning / "dashboards/bandit-router.yml").read_text())[
        "providers"
    ]
    dashboards = tmp_path / provider["options"]["path"].lstrip("/")
    (dashboard,) = dashboards.glob("*.json")
    assert dashboard.read_bytes() == (DEPLOY / "grafana/bandit-router.json").read_bytes()
    # The dashboard's data-source variable picks a data source of the provisioned type.
    variables = yaml.safe_load(dashboard.read_text())["templating"]["list"]
    (ds,) = [v for v in variables if v["type"] == "datasource"]
    assert ds["query"] == datasource["type"]
