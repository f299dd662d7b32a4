from django.contrib import admin
from django.urls import include, path

from apps.clusters.views import readyz
from apps.core.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("", include("apps.overview.urls")),
    path("", include("apps.canary.urls")),
    path("", include("apps.graph.urls")),
    path("", include("apps.policies.urls")),
]
