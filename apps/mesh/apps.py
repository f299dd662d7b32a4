from django.apps import AppConfig


class MeshConfig(AppConfig):
    name = "apps.mesh"
    label = "mesh"
    verbose_name = "Mesh snapshot"
