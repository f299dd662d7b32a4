from django.urls import path

from . import views

app_name = "overview"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("services/<str:namespace>/<str:name>/", views.detail, name="detail"),
    path("services/<str:namespace>/<str:name>/series", views.series, name="series"),
]
