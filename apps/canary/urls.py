from django.urls import path

from . import views

app_name = "canary"
urlpatterns = [
    path("splits/", views.splits, name="splits"),
]
