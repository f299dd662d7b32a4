from django.contrib import admin

from .models import Cluster, CollectionRun


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "enabled",
        "in_cluster",
        "kubeconfig_path",
        "prometheus_url",
        "poll_interval_seconds",
    )
    search_fields = ("name",)


@admin.register(CollectionRun)
class CollectionRunAdmin(admin.ModelAdmin):
    list_display = ("cluster", "kind", "status", "started_at", "duration_ms", "api_requests", "error")
    list_filter = ("cluster", "kind", "status")
    readonly_fields = [f.name for f in CollectionRun._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False
