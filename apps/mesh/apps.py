from django.apps import AppConfig


class MeshConfig(AppConfig):
    name = "apps.mesh"
    label = "mesh"
    verbose_name = "Mesh snapshot"

    def ready(self) -> None:
        from apps.clusters.tasks import Collection, register_collection

        from .tasks import collect_cluster

        register_collection(Collection(collect_cluster, "next_collect_at"))
