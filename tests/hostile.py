"""Hostile cluster data: the bookstore seed with strings a real apiserver stores where nothing validates them.

Object names are validated by the stand-in as by a real apiserver, so the hostile strings go where a real cluster
accepts anything (or where its rules still allow surprises):
- TrafficSplit `spec.service` and `backends[].service` (free strings in the SMI CRD), `backends[].weight` (any
  number), and an `ownerReferences` Canary name (any non-empty string);
- TrafficTarget `destination` and `sources[]` names and namespaces, `rules[].matches[]`;
- HTTPRouteGroup `matches[]`: name, pathRegex, header names and values;
- a Flagger Canary's `targetRef.name` and `service.name`;
- MeshConfig `spec.sidecar.envoyImage`;
- annotations (any value) on a Service and a Namespace (the sidecar-injection one the Mesh page shows);
- label values, within the label-value rule (uppercase, dots, underscores, empty), on a Service and a Pod's `app`.
And, as the metrics collector would store them from Prometheus labels (any UTF-8): service KPIs, edges and split
shares naming hostile namespaces and services.
"""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.utils import timezone
from hypothesis import strategies as st

from apps.clusters.models import Cluster
from apps.mesh.services import collect_and_record
from apps.metrics.models import EdgeKPI, ServiceKPI, SplitShare
from lab.seeds import Seed
from lab.seeds.loader import load_seed

# Strings known to break something somewhere: paths, dots, markup, quotes, template syntax, URLs, length, nothing.
HOSTILE_STRINGS = [
    "a/b",
    "bookstore/bookstore-v1",
    "..",
    ".",
    "",
    " ",
    "a.b",
    "bookstore.bookstore.svc.cluster.local",
    "Bookstore-V1",
    "-a",
    "a-",
    "bookstore-v1/../../admin",
    "%2F",
    "a%2Fb",
    "?x=1",
    "#frag",
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "</textarea></script><svg onload=alert(1)>",
    "{{ request }}{% csrf_token %}",
    "javascript:alert(1)",
    "//evil.example/x",
    "\\\\evil\\x",
    "x" * 300,
    "b" * 64,
    "é",
    "ß-straße",
    "😀",
    "\u202eevil",
    "null",
    "0",
    "line\nbreak",
    "tab\there",
]
VALID_NAMES = ["bookstore", "bookstore-v1", "bookstore-v2", "bookwarehouse", "mysql", "bookbuyer"]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=24),
    st.text(alphabet=st.sampled_from("/.<>\"'&%#?:=\\ -aZ0é"), min_size=1, max_size=12),
)
# A label value (k8s IsValidLabelValue): empty, or at most 63 of [A-Za-z0-9_.-] starting and ending alphanumeric.
label_value = st.one_of(
    st.just(""),
    st.from_regex(r"\A[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z"),
    st.sampled_from(["Bookstore", "book.store", "book_store", "a" * 63]),
)
weight = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from([0, 1, 100, -1, 33.5]),
)


@dataclass(frozen=True)
class HostileData:
    """What one example puts into the cluster and into the metrics tables."""

    root: str
    backends: list[dict[str, Any]]
    owner: str
    target_source: tuple[str, str]  # (namespace, name)
    target_destination: tuple[str, str]
    rule_match: str
    route: dict[str, Any]  # an HTTPRouteGroup match
    canary: tuple[str, str]  # (targetRef name, service name)
    envoy_image: str
    annotation: str
    injection: str
    service_label: str
    app_label: str
    peer: tuple[str, str]  # a metrics peer (namespace, service)


@st.composite
def hostile_data(draw: st.DrawFn) -> HostileData:
    pool = draw(st.lists(hostile_text, min_size=2, max_size=6)) + VALID_NAMES

    def pick() -> str:
        return draw(st.sampled_from(pool))

    backends = [{"service": pick(), "weight": draw(weight)} for _ in range(draw(st.integers(min_value=1, max_value=4)))]
    header = draw(st.dictionaries(hostile_text, hostile_text, max_size=2))
    return HostileData(
        root=pick(),
        backends=backends,
        owner=draw(hostile_text.filter(bool)),
        target_source=(pick(), pick()),
        target_destination=(pick(), pick()),
        rule_match=pick(),
        route={"name": pick(), "pathRegex": pick(), "methods": ["GET"], "headers": [header] if header else []},
        canary=(pick(), pick()),
        envoy_image=pick(),
        annotation=pick(),
        injection=pick(),
        service_label=draw(label_value),
        app_label=draw(label_value),
        peer=(pick(), pick()),
    )


# Data with the one value of the issue: a backend named with a `/` (NoReverseMatch on /splits/ before the fix).
SLASH_BACKEND = HostileData(
    root="bookstore",
    backends=[{"service": "bookstore-v1", "weight": 90}, {"service": "a/b", "weight": 10}],
    owner="flagger-canary",
    target_source=("bookbuyer", "bookbuyer"),
    target_destination=("bookstore", "bookstore"),
    rule_match="buy-a-book",
    route={"name": "buy-a-book", "pathRegex": ".*a-book.*new", "methods": ["GET"]},
    canary=("bookstore", "bookstore"),
    envoy_image="envoyproxy/envoy-distroless:v1.22.2",
    annotation="plain",
    injection="enabled",
    service_label="bookstore",
    app_label="bookstore",
    peer=("bookbuyer", "bookbuyer"),
)


@functools.cache
def _bookstore() -> Seed:
    return load_seed("bookstore")


def hostile_seed(data: HostileData) -> Seed:
    """The bookstore seed with `data` written into it, plus a second, sound TrafficSplit that must stay shown."""
    objects = copy.deepcopy(_bookstore().objects)
    for obj in objects:
        kind, meta = obj["kind"], obj["metadata"]
        where = (meta.get("namespace"), meta["name"])
        if kind == "TrafficSplit":
            obj["spec"] = {"service": data.root, "backends": data.backends}
            meta["ownerReferences"] = [
                {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": data.owner, "uid": str(uuid.uuid4())}
            ]
        elif kind == "TrafficTarget" and where == ("bookstore", "bookstore"):
            spec = obj["spec"]
            ns, name = data.target_destination
            spec["destination"] = {"kind": "ServiceAccount", "namespace": ns, "name": name}
            ns, name = data.target_source
            spec["sources"].append({"kind": "ServiceAccount", "namespace": ns, "name": name})
            spec["rules"][0]["matches"].append(data.rule_match)
        elif kind == "HTTPRouteGroup" and where == ("bookstore", "bookstore-service-routes"):
            obj["spec"]["matches"].append(data.route)
        elif kind == "MeshConfig":
            obj["spec"]["sidecar"]["envoyImage"] = data.envoy_image
        elif kind == "Namespace" and where == (None, "bookstore"):
            meta["annotations"]["openservicemesh.io/sidecar-injection"] = data.injection
        elif kind == "Service" and where == ("bookstore", "bookstore-v2"):
            meta.setdefault("annotations", {})["meshboard.test/note"] = data.annotation
            meta["labels"]["meshboard.test/label"] = data.service_label
        elif kind == "Pod" and meta["name"].startswith("bookstore-v2-"):
            meta["labels"]["app"] = data.app_label
    objects += [
        {
            "apiVersion": "split.smi-spec.io/v1alpha2",
            "kind": "TrafficSplit",
            "metadata": {"name": "sound-split", "namespace": "bookwarehouse"},
            "spec": {"service": "bookwarehouse", "backends": [{"service": "bookwarehouse", "weight": 100}]},
        },
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "bookstore", "namespace": "bookstore"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": data.canary[0]},
                "service": {"port": 14001, "name": data.canary[1]},
                "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50},
            },
            "status": {"phase": "Progressing", "canaryWeight": 10},
        },
    ]
    return replace(_bookstore(), name="hostile", objects=objects)


def add_hostile_metrics(cluster: Cluster, data: HostileData) -> None:
    """KPIs, edges and split shares as the metrics collector stores them from Prometheus labels naming `data.peer`
    and the split's backends."""
    now = timezone.now()
    peer_ns, peer = (value[:253] for value in data.peer)  # the columns' length, as the collector cuts them
    kpi = {"collected_at": now, "request_rate": 2.0, "rate_2xx": 1.0, "rate_5xx": 1.0, "success_rate": 0.5}
    ServiceKPI.objects.create(cluster=cluster, namespace=peer_ns, service=peer, p99_ms=12.0, **kpi)
    for source, destination in (
        (("bookstore", "bookstore"), (peer_ns, peer)),  # outbound of bookstore's detail page
        ((peer_ns, peer), ("bookstore", "bookstore-v1")),  # inbound of bookstore-v1's
        ((peer_ns, peer), ("bookstore", "bookstore")),
        ((peer_ns, peer), (peer_ns, peer)),
    ):
        EdgeKPI.objects.update_or_create(
            cluster=cluster,
            source_namespace=source[0],
            source_service=source[1],
            destination_namespace=destination[0],
            destination_service=destination[1],
            defaults={**kpi, "denied_rate": 0.5, "p99_ms": 30.0},
        )
    for backend in {b["service"][:253] for b in data.backends}:
        SplitShare.objects.create(
            cluster=cluster,
            namespace="bookstore",
            split="bookstore-split",
            backend=backend,
            share_short=0.5,
            share_5m=0.5,
            request_rate=1.0,
            short_window_seconds=8,
            collected_at=now,
        )


def collect_hostile(kubeapi_factory: Callable[..., Any], data: HostileData) -> Cluster:
    """A stand-in seeded with `data`, collected by the real collector, then stopped (pages never call it)."""
    Cluster.objects.all().delete()
    server = kubeapi_factory(hostile_seed(data))
    cluster = Cluster.objects.create(name="lab", kubeconfig_path=str(server.kubeconfig))
    try:
        _run, error = collect_and_record(cluster)
    finally:
        server.stop()
    assert error is None, error
    add_hostile_metrics(cluster, data)
    return cluster
