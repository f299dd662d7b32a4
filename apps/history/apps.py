from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "apps.history"
    label = "history"
    verbose_name = "Configuration history"

    def ready(self) -> None:
        from . import services  # noqa: F401  (connects its receiver to the mesh's snapshot_stored)
