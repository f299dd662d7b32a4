from django.urls import path

from . import views

app_name = "graph"
urlpatterns = [
    path("graph/", views.graph, name="graph"),
    path("graph/data", views.data, name="data"),
]
