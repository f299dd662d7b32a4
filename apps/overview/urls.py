from django.urls import path

from . import views

app_name = "overview"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("services/<str:namespace>/<str:name>/", views.detail, name="detail"),
    path("services/<str:namespace>/<str:name>/series", views.series, name="series"),
    # kind: deployment, statefulset, daemonset, replicaset (one no Deployment owns) or pod (one no controller owns)
    path("workloads/<str:namespace>/<str:kind>/<str:name>/", views.workload, name="workload"),
    path("workloads/<str:namespace>/<str:kind>/<str:name>/series", views.workload_series, name="workload_series"),
]
