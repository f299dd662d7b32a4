from django.urls import path

from . import views

app_name = "clusters"
urlpatterns = [
    path("mesh/", views.status, name="status"),
    path("healthz", views.healthz, name="healthz"),
]
