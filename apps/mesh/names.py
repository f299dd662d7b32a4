"""Kubernetes' naming rules, checked before any name from the cluster (or from Prometheus) goes into a URL.

Object names reach us from places nothing validates: a TrafficSplit's `spec.service` and `backends[].service` are
free strings in the SMI CRD, a TrafficTarget names service accounts in free strings, and Prometheus labels may hold
anything. A name with `/`, a dot, nothing at all or 300 characters can be stored in a real cluster, so it must never
reach `reverse()` (NoReverseMatch: a 500 for every viewer) nor a link (`..` would walk up the path). A name that fails
its rule is shown as inert text with a note (the `object_link` tag in `apps.mesh.templatetags.object_links`), and a
JSON `url` is "" for it.

The rules, as the apiserver applies them (k8s.io/apimachinery/pkg/util/validation):
- RFC 1123 label (`IsDNS1123Label`): lowercase alphanumerics and '-', starting and ending alphanumeric, at most 63
  characters. Namespaces. Services too: Kubernetes validates their names as RFC 1035 labels (a letter first), a
  subset of this rule; the wider one keeps the link of a Service on a cluster that relaxes it.
- RFC 1123 subdomain (`IsDNS1123Subdomain`): labels of that alphabet joined by dots, at most 253 characters in all
  (no limit on one label's length). Most other objects, custom resources such as TrafficSplit included.
"""

from __future__ import annotations

import re
from typing import Final

from django.urls import reverse

DNS_LABEL_MAX: Final = 63
DNS_SUBDOMAIN_MAX: Final = 253

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL: Final = re.compile(_LABEL)
_DNS_SUBDOMAIN: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")

NAMESPACE: Final = "Namespace"
SERVICE: Final = "Service"
TRAFFIC_SPLIT: Final = "TrafficSplit"
CANARY: Final = "Canary"  # Flagger's (flagger.app/v1beta1)


def is_dns_label(value: object) -> bool:
    """An RFC 1123 label: `bookstore-v1` yes; `Bookstore`, `a.b`, `a/b`, `-a`, "" and 64 characters no."""
    return isinstance(value, str) and len(value) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: object) -> bool:
    """An RFC 1123 subdomain: `bookstore-split` and `a.b` yes; `a..b`, `a/b`, "" and 254 characters no."""
    return isinstance(value, str) and len(value) <= DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(value) is not None


# The rule each kind's names follow. A kind not listed here has no page of its own.
RULES: Final = {
    NAMESPACE: is_dns_label,
    SERVICE: is_dns_label,
    TRAFFIC_SPLIT: is_dns_subdomain,
    CANARY: is_dns_subdomain,
}


def is_valid_name(kind: str, value: object) -> bool:
    """`value` follows the naming rule of `kind` (see RULES); a kind without a rule never passes."""
    rule = RULES.get(kind)
    return rule is not None and rule(value)


def name_problem(kind: str, namespace: object, name: object) -> str:
    """Why `namespace`/`name` cannot be an object of `kind` ("" when both follow their rules), for the note shown
    beside the inert text: 'not a valid Service name'."""
    if not is_valid_name(NAMESPACE, namespace):
        return "not a valid namespace name"
    if not is_valid_name(kind, name):
        return f"not a valid {kind} name"
    return ""


def object_url(route: str, kind: str, namespace: object, name: object) -> str:
    """`reverse(route, args=[namespace, name])` for an object of `kind`, or "" when either name fails its rule:
    such an object cannot exist, so it has no page, and the name is never put into a path."""
    if name_problem(kind, namespace, name):
        return ""
    return reverse(route, args=[namespace, name])
