from django.urls import path

from . import views

app_name = "canary"
urlpatterns = [
    path("splits/", views.splits, name="splits"),
    path("splits/audit/", views.audit, name="audit"),
    path("splits/audit/<int:pk>/rollback/", views.rollback, name="rollback"),
    path("splits/<str:namespace>/<str:name>/", views.edit, name="edit"),
    path("splits/<str:namespace>/<str:name>/compare/", views.compare, name="compare"),
    path("splits/<str:namespace>/<str:name>/compare/series", views.compare_series, name="compare_series"),
    path("canaries/<str:namespace>/<str:name>/", views.canary, name="canary"),
]
