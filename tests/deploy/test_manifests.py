"""deploy/kubernetes/: every overlay renders with `kubectl kustomize`, every object is valid against the Kubernetes
schemas (kubernetes-validate, strict), checkov finds nothing that lacks a written reason, and the pods are hardened
and kept out of the mesh as the manifests say.

No cluster runs here, so what a cluster would do with these objects (pull the images, start the pods) is not
tested; what is tested is everything that can be read off the rendered objects.
"""

from __future__ import annotations

import json
import subprocess

import kubernetes_validate
import pytest
import yaml

from .conftest import DEPLOY, OVERLAYS, ROOT, named, of_kind, workloads

# The oldest Kubernetes the manifests are written for (policy/v1 PDBs, seccompProfile fields, restricted Pod
# Security labels), and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
APP_COMPONENTS = {"web", "worker-cluster", "worker-metrics", "beat"}


def test_it_renders_the_three_overlays(objects) -> None:
    assert set(OVERLAYS) == {"cluster-wide", "cluster-wide-external-db", "namespace-scoped"}
    for overlay, docs in objects.items():
        deployments = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
        assert deployments == {
            "meshboard-web",
            "meshboard-worker-cluster",
            "meshboard-worker-metrics",
            "meshboard-beat",
            "meshboard-redis",
        }, overlay
        # Namespaced objects of Meshboard's own all land in its namespace (Roles land in the watched ones).
        for doc in docs:
            if doc["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
                assert "namespace" not in doc["metadata"], (overlay, doc["kind"])
            elif doc["kind"] not in {"Role", "RoleBinding"}:
                assert doc["metadata"]["namespace"] == "meshboard", (overlay, doc["kind"], doc["metadata"]["name"])
    assert of_kind(objects["cluster-wide"], "StatefulSet")
    assert not of_kind(objects["cluster-wide-external-db"], "StatefulSet")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_it_validates_every_object_against_the_kubernetes_schemas(objects, version: str) -> None:
    errors = []
    for overlay, docs in objects.items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{overlay}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def _checkov(rendered: dict[str, str], tmp_path) -> dict[tuple[str, str], set[str]]:
    """(check id, resource) -> the overlays where it failed."""
    files = []
    for overlay, text in rendered.items():
        path = tmp_path / f"{overlay}.yaml"
        path.write_text(text)
        files += ["-f", str(path)]
    # --skip-download: no network, so no Prisma Cloud guidelines (they only add links to the report).
    command = [str(ROOT / "scripts" / "checkov.sh"), *files, "--framework", "kubernetes", "--output", "json"]
    done = subprocess.run(
        [*command, "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # checkov exits 1 when a check failed; anything else that is not 0 is checkov (or its install) failing.
    assert done.returncode in (0, 1), f"checkov did not run:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["kubernetes"], reports
    results = reports[0]["results"]
    assert reports[0]["summary"]["passed"] > 100, "checkov checked (almost) nothing"
    failed: dict[tuple[str, str], set[str]] = {}
    for check in results["failed_checks"]:
        overlay = check["file_path"].rsplit("/", 1)[-1].removesuffix(".yaml")
        failed.setdefault((check["check_id"], check["resource"]), set()).add(overlay)
    return failed


def test_it_passes_checkov_but_for_checks_with_a_written_reason(rendered, tmp_path) -> None:
    reasons = yaml.safe_load((DEPLOY / "checkov-reasons.yaml").read_text())
    for check_id, entry in reasons.items():
        assert len(entry["reason"].split()) >= 20, f"{check_id}: a reason is a few sentences, not a word"
    accepted = {(check_id, resource) for check_id, entry in reasons.items() for resource in entry["resources"]}

    failed = _checkov(rendered, tmp_path)

    unexplained = sorted(
        f"{c} {r} (in {', '.join(sorted(o))})" for (c, r), o in failed.items() if (c, r) not in accepted
    )
    assert not unexplained, "checkov failures without a reason in checkov-reasons.yaml:\n" + "\n".join(unexplained)
    stale = sorted(f"{c} {r}" for c, r in accepted - failed.keys())
    assert not stale, "reasons for checks that no longer fail (remove them):\n" + "\n".join(stale)


def _pod_templates(docs: list[dict]) -> list[tuple[str, dict]]:
    return [(w["metadata"]["name"], w["spec"]["template"]) for w in workloads(docs)]


def test_it_hardens_every_pod(objects) -> None:
    for overlay, docs in objects.items():
        for name, template in _pod_templates(docs):
            where = f"{overlay}: {name}"
            spec = template["spec"]
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] >= 10000, where
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "hostNetwork" not in spec and "hostPID" not in spec, where
            mounts_needed = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
            for container in spec.get("initContainers", []) + spec["containers"]:
                what = f"{where}/{container['name']}"
                sc = container["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, what
                assert sc["readOnlyRootFilesystem"] is True, what
                assert sc["capabilities"] == {"drop": ["ALL"]}, what
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, what
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) == {"cpu", "memory"}, what
                # The writable places of a read-only root are emptyDirs (or the database's volume).
                mounted = {m["name"] for m in container.get("volumeMounts", [])}
                assert mounted & mounts_needed, f"{what} has no writable emptyDir"
            for container in spec["containers"]:
                assert "livenessProbe" in container and "readinessProbe" in container, f"{where}/{container['name']}"
            # Only the two pods that call the API server carry a token.
            component = template["metadata"]["labels"]["app.kubernetes.io/component"]
            calls_api = component in {"web", "worker-cluster"}
            assert spec["automountServiceAccountToken"] is calls_api, where
            assert (spec["serviceAccountName"] != "meshboard") is calls_api, where


def test_it_probes_web_on_healthz_and_readyz_and_keeps_one_web_pod_through_disruptions(objects) -> None:
    for overlay, docs in objects.items():
        web = named(docs, "Deployment", "meshboard-web")
        [container] = web["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", overlay
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", overlay
        # Django answers only its ALLOWED_HOSTS: the probes send one of them instead of the pod's IP.
        config = named(docs, "ConfigMap", "meshboard")["data"]
        for probe in ("livenessProbe", "readinessProbe"):
            [host] = [h["value"] for h in container[probe]["httpGet"]["httpHeaders"] if h["name"] == "Host"]
            assert host in config["ALLOWED_HOSTS"].split(","), overlay
        assert web["spec"]["replicas"] >= 2
        pdb = named(docs, "PodDisruptionBudget", "meshboard-web")
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"].items() <= web["spec"]["template"]["metadata"]["labels"].items()


def test_it_runs_web_both_workers_and_one_beat_from_one_image(objects) -> None:
    for overlay, docs in objects.items():
        command = {
            d["metadata"]["name"].removeprefix("meshboard-"): d["spec"]["template"]["spec"]["containers"][0]["command"]
            for d in of_kind(docs, "Deployment")
            if d["metadata"]["name"] != "meshboard-redis"
        }
        assert command["web"] == ["gunicorn", "-c", "meshboard/gunicorn.conf.py", "meshboard.wsgi:application"]
        # One worker per collection queue, each also consuming `tick`; its probes read its own heartbeat.
        for queue in ("cluster", "metrics"):
            worker = f"worker-{queue}"
            assert command[worker][:8] == [
                "celery",
                "-A",
                "meshboard",
                "worker",
                "-Q",
                f"{queue},tick",
                "-n",
                f"{queue}@%h",
            ]
            [container] = named(docs, "Deployment", f"meshboard-{worker}")["spec"]["template"]["spec"]["containers"]
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["exec"]["command"][-1] == (
                    f"exec python manage.py check_heartbeat worker {queue}@$HOSTNAME {queue}"
                )
        assert command["beat"][:4] == ["celery", "-A", "meshboard", "beat"]
        beat = named(docs, "Deployment", "meshboard-beat")["spec"]
        assert beat["replicas"] == 1 and beat["strategy"] == {"type": "Recreate"}, "never two beats"
        images = {
            c["image"]
            for name, template in _pod_templates(docs)
            if template["metadata"]["labels"]["app.kubernetes.io/component"] in APP_COMPONENTS
            for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]
        }
        assert images == {"meshboard:0.1.0"}, overlay


def test_it_keeps_meshboard_out_of_the_mesh(objects) -> None:
    for overlay, docs in objects.items():
        namespace = named(docs, "Namespace", "meshboard")
        assert "openservicemesh.io/monitored-by" not in namespace["metadata"].get("labels", {})
        assert namespace["metadata"]["labels"]["openservicemesh.io/ignore"] == "true"
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for name, template in _pod_templates(docs):
            annotations = template["metadata"]["annotations"]
            assert annotations["openservicemesh.io/sidecar-injection"] == "disabled", f"{overlay}: {name}"
    # The manifests say why (the AKS add-on's API-server exclusion), where an operator reads them.
    why = (DEPLOY / "base" / "namespace.yaml").read_text()
    assert "outboundIPRangeExclusionList" in why and "API server" in why


def test_it_denies_all_traffic_but_what_meshboard_needs(objects) -> None:
    for overlay, docs in objects.items():
        policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
        assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, overlay
        api = policies["kube-api"]
        assert set(api["podSelector"]["matchExpressions"][0]["values"]) == {"web", "worker-cluster"}
        assert {p["port"] for rule in api["egress"] for p in rule["ports"]} == {443, 6443}
        assert "app-to-database" in policies, overlay


def test_it_watches_the_namespaces_it_has_roles_in(objects) -> None:
    docs = objects["namespace-scoped"]
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    watched = named(docs, "ConfigMap", "meshboard")["data"]["MESHBOARD_WATCH_NAMESPACES"].split(",")
    for kind in ("Role", "RoleBinding"):
        for name in ("meshboard-collector", "meshboard-weights"):
            assert sorted(d["metadata"]["namespace"] for d in of_kind(docs, kind) if d["metadata"]["name"] == name) == (
                sorted(watched)
            ), (kind, name)
    for overlay in ("cluster-wide", "cluster-wide-external-db"):
        config = named(objects[overlay], "ConfigMap", "meshboard")["data"]
        assert config["MESHBOARD_WATCH_NAMESPACES"] == "", overlay
        assert not of_kind(objects[overlay], "Role")
