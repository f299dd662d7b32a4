from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from .models import Access, Cluster, CollectionRun


class AccessInline(admin.StackedInline):
    """A user's namespaces, beside the role (the groups viewer/operator on the same page). For single sign-on
    users the claims overwrite both at their next login."""

    model = Access
    can_delete = False
    fields = ("namespaces", "operate_namespaces", "oidc_subject", "claims_applied_at")
    readonly_fields = ("oidc_subject", "claims_applied_at")
    extra = 0
    max_num = 1


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class MeshboardUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, AccessInline]


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
