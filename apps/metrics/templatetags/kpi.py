"""Formatting of KPI values: None is "unknown" (shown as a dash with a title), never 0 and never NaN."""

from __future__ import annotations

import math

from django import template

register = template.Library()


def _known(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@register.filter
def rate(value: object) -> str:
    if not _known(value):
        return "–"
    if value == 0:
        return "0"
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


@register.filter
def percent(value: object) -> str:
    if not _known(value):
        return "–"
    return f"{value * 100:.2f}%".replace(".00%", "%")


@register.filter
def ms(value: object) -> str:
    if not _known(value):
        return "–"
    return f"{value:.3g} ms" if value < 1000 else f"{value / 1000:.3g} s"


@register.filter
def bytes_rate(value: object) -> str:
    return _binary(value, "/s")


@register.filter
def bytes_total(value: object) -> str:
    return _binary(value, "")


def _binary(value: object, suffix: str) -> str:
    if not _known(value):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.3g} {unit}{suffix}"
        value /= 1024
    return f"{value:.3g} TiB{suffix}"


@register.simple_tag
def sort_link(current: str, key: str) -> str:
    """The sort value a column header links to: ascending first, then descending."""
    return f"-{key}" if current == key else key


@register.filter
def get_item(mapping: object, key: object) -> object:
    """`mapping|get_item:key` for dict lookups with a variable key; None when absent."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def is_istio(cluster: object) -> bool:
    """The cluster is read as an Istio mesh: its edges' TLS evidence is the mTLS share of their requests
    (`connection_security_policy`), not Envoy's TLS handshake stats."""
    from apps.metrics.ranges import is_istio as cluster_is_istio

    return cluster is not None and cluster_is_istio(cluster)
