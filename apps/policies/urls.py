from django.urls import path

from . import views

app_name = "policies"
urlpatterns = [
    path("policies/", views.policies, name="policies"),
    path("mesh/", views.mesh, name="mesh"),
]
