"""deploy/kubernetes, rendered and checked offline.

A manifest that the API server rejects, a probe on the wrong port, a grace period shorter
than the drain, or a variable the daemon does not know only show on a real cluster. Here
each overlay is rendered with ``kubectl kustomize``, every object is validated against the
Kubernetes OpenAPI schema (kubernetes-validate, bundled schemas, strict: unknown fields
fail), and the settings are checked against the daemon itself: every FASTKOKORO_* variable
loads with its config, the probes hit /health on the HTTP port, resources cover the
measured RSS, and the security defaults (non-root, read-only root, no escalation, all
capabilities dropped) hold.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastkokoro_wyoming.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
COMPONENT = K8S / "components" / "scale-on-connections"
KUBERNETES_VERSION = "1.30.0"  # oldest minor still in common support; newer ones accept it
PEAK_RSS_GB = 0.774  # bench/results/cpu-windowed-load.md: 8 clients, 200 words
READY_RSS_GB = 0.70  # docs/languages.md: all nine languages loaded
KINDS = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Service"]


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl); it renders kustomize")
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    with_component = tmp_path_factory.mktemp("with-component")
    (with_component / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize wants paths relative to the kustomization
                "resources": [os.path.relpath(K8S / "overlays" / "cpu", with_component)],
                "components": [os.path.relpath(COMPONENT, with_component)],
            }
        )
    )
    return {
        "cpu": render(K8S / "overlays" / "cpu"),
        "nvidia": render(K8S / "overlays" / "nvidia"),
        "cpu+scale-on-connections": render(with_component),
    }


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def quantity(value: str | int) -> float:
    """A Kubernetes quantity in base units (cores, bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([\d.]+)([A-Za-z]*)", str(value))
    assert m, value
    return float(m.group(1)) * units.get(m.group(2), 1)


def test_every_object_matches_the_kubernetes_schema(rendered):
    import kubernetes_validate

    for name, docs in rendered.items():
        assert sorted(d["kind"] for d in docs) == KINDS, name
        for doc in docs:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_security_defaults(rendered):
    for name, docs in rendered.items():
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0, name
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        c = container(docs)
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True, "writes go to the /data and /tmp volumes"
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert sc.get("privileged") is False
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/data", "/tmp"}
        assert ":" in c["image"] and not c["image"].endswith(":latest")
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, kind)


def test_the_image_user_is_the_pod_user(rendered):
    dockerfile = (ROOT / "docker" / "Dockerfile.cpu").read_text(encoding="utf-8")
    uid = int(re.search(r"useradd [^\n]*--uid (\d+)", dockerfile).group(1))
    pod = one(rendered["cpu"], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid


def test_every_variable_is_a_setting_the_daemon_loads(rendered):
    for name, docs in rendered.items():
        env = {e["name"]: e["value"] for e in container(docs)["env"]}
        settings = {k: v for k, v in env.items() if k.startswith("FASTKOKORO_")}
        assert settings == env, f"{name}: only daemon settings are set here"
        cfg = load_config(environ=settings)  # an unknown name or bad value raises
        assert cfg.http.max_connections_per_peer == 0, "all clients share the proxy's address"
        assert cfg.wyoming.max_connections_per_peer == 0


def test_probes_and_the_drain_fit_together(rendered):
    for name, docs in rendered.items():
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        c = container(docs)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": 8880, "wyoming": 10210}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] == "/health" and ports[get["port"]] == 8880, (name, probe)
        startup = c["startupProbe"]
        # the first start downloads the model and derives the windowed graphs: minutes
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
        assert c["readinessProbe"]["periodSeconds"] * c["readinessProbe"]["failureThreshold"] <= 15
        cfg = load_config(
            environ={e["name"]: e["value"] for e in c["env"] if e["name"].startswith("FASTKOKORO_")}
        )
        pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        drain = max(cfg.http.drain_timeout_s, cfg.wyoming.drain_timeout_s)
        assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + 5, name


def test_resources_cover_the_measured_memory(rendered):
    for name, docs in rendered.items():
        res = container(docs)["resources"]
        assert quantity(res["requests"]["memory"]) >= READY_RSS_GB * 1e9, name
        assert quantity(res["limits"]["memory"]) >= 1.25 * PEAK_RSS_GB * 1e9, name
        threads = next(
            e["value"]
            for e in container(docs)["env"]
            if e["name"] == "FASTKOKORO_ENGINE_RUNTIME_INTRA_OP_THREADS"
        )
        assert int(threads) <= quantity(res["limits"]["cpu"]), "threads beyond the CPU limit"
    gpu = container(rendered["nvidia"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["image"].endswith(":cuda") and container(rendered["cpu"])["image"].endswith(":cpu")


def test_services_hpa_and_pdb_reach_the_pods(rendered):
    for name, docs in rendered.items():
        deployment = one(docs, "Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        port_names = {p["name"] for p in container(docs)["ports"]}
        services = {s["spec"]["ports"][0]["port"]: s for s in docs if s["kind"] == "Service"}
        assert set(services) == {8880, 10210}, name
        for svc in services.values():
            assert svc["spec"]["selector"].items() <= labels.items()
            assert svc["spec"]["ports"][0]["targetPort"] in port_names
        hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
        assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["minReplicas"] <= hpa["maxReplicas"]
        pdb = one(docs, "PodDisruptionBudget")["spec"]
        assert pdb["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["maxUnavailable"] == 1
    assert one(rendered["cpu"], "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2, (
        "one pod left while the other drains"
    )


def test_custom_metric_is_built_from_the_daemons_gauges(rendered):
    metrics = (ROOT / "fastkokoro_wyoming" / "http_api" / "metrics.py").read_text()
    prefix = re.search(r'^PREFIX = "(\w+)"', metrics, re.M).group(1)
    exposed = {prefix + m for m in re.findall(r'f"\{PREFIX\}(_\w+)"', metrics)}
    rules = yaml.safe_load((COMPONENT / "prometheus-adapter-rules.yaml").read_text())
    (rule,) = rules["rules"]["custom"]
    keda = yaml.safe_load((COMPONENT / "keda-scaledobject.yaml").read_text())
    queries = [rule["metricsQuery"], rule["seriesQuery"]]
    queries += [
        t["metadata"]["query"] for t in keda["spec"]["triggers"] if "query" in t["metadata"]
    ]
    for query in queries:
        used = set(re.findall(rf"\b{prefix}_\w+", query))
        assert used and used <= exposed, f"not exposed by the daemon: {used - exposed}"
    (metric,) = one(rendered["cpu+scale-on-connections"], "HorizontalPodAutoscaler")["spec"][
        "metrics"
    ]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    deployment = one(rendered["cpu"], "Deployment")["metadata"]["name"]
    assert keda["kind"] == "ScaledObject" and keda["spec"]["scaleTargetRef"]["name"] == deployment
