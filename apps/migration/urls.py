from django.urls import path

from . import views

app_name = "migration"
urlpatterns = [
    path("migrate/", views.migrate, name="migrate"),
    path("migrate/bundle.yaml", views.bundle, name="bundle"),
    path("migrate/report.txt", views.report, name="report"),
    path("migrate/before-after/", views.before_after_view, name="before-after"),
    path("migrate/<str:namespace>/bundle.yaml", views.bundle, name="namespace-bundle"),
]
