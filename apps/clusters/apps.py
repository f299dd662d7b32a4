from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ClustersConfig(AppConfig):
    name = "apps.clusters"
    label = "clusters"
    verbose_name = "Clusters"

    def ready(self) -> None:
        from . import lost  # noqa: F401 (connects its receiver: a collection whose process died)
        from .signals import create_roles_after_migrate

        # After the mesh app migrates, so the view permissions of both apps exist.
        post_migrate.connect(create_roles_after_migrate, sender=self.apps.get_app_config("mesh"))
