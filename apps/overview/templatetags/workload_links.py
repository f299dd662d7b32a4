"""Links to workload pages, built only from names that follow Kubernetes' rules (apps.overview.workloads).

    {% load workload_links %}
    {% workload_url namespace kind name as url %}   {# kind: Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod #}
    {% pod_workload_url pod as url %}                {# the page of the workload that runs this pod #}

Each gives "" for a kind without a page or a name no such object can have: show the name as text then.
"""

from __future__ import annotations

from django import template

from apps.overview.workloads import POD
from apps.overview.workloads import workload_url as _workload_url

register = template.Library()


@register.simple_tag
def workload_url(namespace: object, kind: object, name: object) -> str:
    return _workload_url(namespace, kind, name)


@register.simple_tag
def pod_workload_url(pod: object) -> str:
    kind = getattr(pod, "workload_kind", "")
    if kind:
        return _workload_url(pod.namespace, kind, pod.workload_name)
    return _workload_url(pod.namespace, POD, pod.name)
