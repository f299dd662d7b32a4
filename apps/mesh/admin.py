from django.contrib import admin

from . import models


class SnapshotAdmin(admin.ModelAdmin):
    """Snapshot rows are written by the collector only; the admin shows them read-only."""

    list_display = ("cluster", "namespace", "name")
    list_filter = ("cluster",)
    search_fields = ("namespace", "name")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(models.Pod)
class PodAdmin(SnapshotAdmin):
    list_display = ("cluster", "namespace", "name", "phase", "ready", "has_sidecar", "workload_name")
    list_filter = ("cluster", "has_sidecar", "ready", "phase")


@admin.register(models.TrafficSplit)
class TrafficSplitAdmin(SnapshotAdmin):
    list_display = ("cluster", "namespace", "name", "root_service", "backends", "resource_version")


for model in (
    models.MeshNamespace,
    models.Node,
    models.Service,
    models.ServiceAccount,
    models.Workload,
    models.EndpointSlice,
    models.TrafficTarget,
    models.HTTPRouteGroup,
    models.TCPRoute,
    models.Canary,
):
    admin.site.register(model, SnapshotAdmin)


@admin.register(models.MeshState)
class MeshStateAdmin(SnapshotAdmin):
    list_display = ("cluster", "mesh_name", "osm_version", "kubernetes_version", "collected_at")
    search_fields = ("mesh_name",)
