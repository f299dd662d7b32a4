"""URLs of the history pages, built only from names that follow Kubernetes' rules (a name that does not has no page:
see apps.mesh.names), for this app's templates and the pages that link here."""

from __future__ import annotations

from django.urls import reverse

from apps.mesh.names import is_dns_label, is_dns_subdomain

from .models import Kind

# The URL's word for each kind: /history/split/<ns>/<name>/ ...
SLUGS = {
    "split": Kind.TRAFFIC_SPLIT,
    "traffictarget": Kind.TRAFFIC_TARGET,
    "httproutegroup": Kind.HTTP_ROUTE_GROUP,
    "tcproute": Kind.TCP_ROUTE,
    "meshconfig": Kind.MESH_CONFIG,
}
SLUG_OF = {kind: slug for slug, kind in SLUGS.items()}


def object_history_url(kind: str, namespace: object, name: object) -> str:
    """The timeline of one object, or "" when its kind has none or a name breaks its rule."""
    if kind not in SLUG_OF or not is_dns_label(namespace) or not is_dns_subdomain(name):
        return ""
    return reverse("history:object", args=[SLUG_OF[kind], namespace, name])


def service_history_url(namespace: object, name: object) -> str:
    """The timeline of what names one Service, or "" when a name breaks its rule."""
    if not is_dns_label(namespace) or not is_dns_label(name):
        return ""
    return reverse("history:service", args=[namespace, name])
