from django.urls import path

from . import views

app_name = "history"
urlpatterns = [
    path("history/", views.mesh, name="mesh"),
    path("history/service/<str:namespace>/<str:name>/", views.service, name="service"),
    path("history/<slug:kind>/<str:namespace>/<str:name>/", views.one_object, name="object"),
]
