from django import template

from apps.policies.meshinfo import MeshReport, mesh_report

register = template.Library()


@register.simple_tag
def cluster_mesh_report(cluster) -> MeshReport:
    """`{% cluster_mesh_report cluster as m %}`: mesh facts and checks for the Mesh page's cluster sections."""
    return mesh_report(cluster)
