from django.urls import path

from . import views

app_name = "clusters"
urlpatterns = [
    path("", views.status, name="status"),
    path("healthz", views.healthz, name="healthz"),
]
