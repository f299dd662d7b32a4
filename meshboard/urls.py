from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("apps.clusters.urls")),
    path("", include("apps.services.urls")),
    path("", include("apps.canary.urls")),
    path("", include("apps.graph.urls")),
    path("", include("apps.policies.urls")),
]
