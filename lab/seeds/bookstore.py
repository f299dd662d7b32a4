"""The OSM 1.2 bookstore demo as a seed, at the point of the demo flow where the split sends everything to v1.

Read from the manifests copied into `data/bookstore-demo-release-v1.2/` (osm-docs release-v1.2, Apache-2.0):
`apps/*.yaml` (bookbuyer, bookthief, bookstore v1 and v2, bookwarehouse, the mysql StatefulSet with its headless
Service), `split/traffic-split-v1.yaml` (bookstore-v1: 100) and `access/traffic-access-v1.yaml`.

Why `traffic-access-v1.yaml` and not the allow-bookthief variant: the demo's steady SMI-mode state (install_apps.md
matrix) allows bookbuyer -> bookstore, bookstore -> bookwarehouse and bookwarehouse -> mysql only, so bookthief is
denied. Deploying bookstore-v2 (`apps/bookstore-v2.yaml`) also adds TrafficTarget `bookstore-v2` for bookbuyer, as the
traffic-split walkthrough does before moving the weights.

The seed itself adds what the demo assumes is already there: the four namespaces as `osm namespace add` and
`osm metrics enable` leave them (monitored by mesh `osm`, injection and metrics annotations), two AKS Linux nodes,
the `default/kubernetes` Service and Endpoints, and OSM's control plane in `osm-system` with MeshConfig
`enablePermissiveTrafficPolicyMode: false` (SMI mode).

Then OSM's own policy API, as OSM's other demos use it (`data/bookstore-osm-policies.yaml`, which says why each
object is there): an ingress-nginx controller with an Ingress to bookstore admitted by IngressBackend `bookstore-http`,
an HTTPS route to bookstore-v1 admitted by `bookstore-mtls` (mTLS, AuthenticatedPrincipal source), Egress
`bookbuyer-external`, UpstreamTrafficSetting `bookstore-rate-limit`, Retry `bookbuyer-to-bookstore` and the
MeshRootCertificate `osm-mesh-root-certificate`. For them the MeshConfig turns the retry policy on (egress policy is
on by the chart's default) and names the ingress gateway's client certificate, and the control plane runs with
`--enable-mesh-root-certificate=true`, as a chart installed with `osm.featureFlags.enableMeshRootCertificate` does.
"""

from __future__ import annotations

from pathlib import Path

from lab.seeds import cluster
from lab.seeds.yamlfiles import read_manifests

DEMO_DIR = Path(__file__).parent / "data" / "bookstore-demo-release-v1.2"
APP_FILES = (
    "bookbuyer.yaml",
    "bookthief.yaml",
    "bookstore.yaml",
    "bookstore-v2.yaml",
    "bookwarehouse.yaml",
    "mysql.yaml",
)
NAMESPACES = ("bookstore", "bookbuyer", "bookthief", "bookwarehouse")
OSM_POLICIES = Path(__file__).parent / "data" / "bookstore-osm-policies.yaml"
# The ingress controller's client certificate (OSM's nginx demo: MeshConfig certificate.ingressGateway); its SAN is
# the AuthenticatedPrincipal of IngressBackend bookstore-mtls.
INGRESS_GATEWAY_CERTIFICATE = {
    "subjectAltNames": ["ingress-nginx.ingress-nginx.cluster.local"],
    "validityDuration": "24h",
    "secret": {"name": "osm-nginx-client-cert", "namespace": cluster.OSM_NAMESPACE},
}
MRC_FLAG = "--enable-mesh-root-certificate"


def bookstore_manifests(*, kubernetes_version: str = "v1.30.4", random_seed: int = 7) -> list[dict]:
    """What gets applied, before the controller emulation: cluster, control plane, namespaces, demo files."""
    objects = cluster.base_cluster(nodes=2, kubernetes_version=kubernetes_version, random_seed=random_seed)
    objects += [_with_osm_policy_api(o) for o in cluster.osm_control_plane(permissive=False)]
    objects += [cluster.mesh_namespace(ns) for ns in NAMESPACES]
    for name in APP_FILES:
        objects += read_manifests(DEMO_DIR / "apps" / name)
    objects += read_manifests(DEMO_DIR / "access" / "traffic-access-v1.yaml")
    objects += read_manifests(DEMO_DIR / "split" / "traffic-split-v1.yaml")
    objects += read_manifests(OSM_POLICIES)
    return objects


def _with_osm_policy_api(obj: dict) -> dict:
    """The control plane's objects as the policies of OSM_POLICIES need them (see the module's docstring)."""
    if obj["kind"] == "MeshConfig":
        spec = obj["spec"]
        spec["featureFlags"]["enableRetryPolicy"] = True
        spec["certificate"]["ingressGateway"] = INGRESS_GATEWAY_CERTIFICATE
    elif obj["kind"] == "Deployment":
        for container in obj["spec"]["template"]["spec"]["containers"]:
            container["args"] = [f"{MRC_FLAG}=true" if a == f"{MRC_FLAG}=false" else a for a in container["args"]]
    return obj
